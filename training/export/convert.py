"""llama.cpp's own converters, matched to the installed llama-cpp-python, run as subprocesses.

The converters (``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py``, their ``conversion/`` package and
``gguf-py/``) ship in the llama-cpp-python *sdist*, not in the wheel. They are fetched once per version with::

    pip download --no-deps --no-binary :all: llama-cpp-python==<installed version>

and only those files (~2 MB) are extracted into ``cache_dir()/llama-cpp-<version>/``, atomically. An offline
machine can point ``DOPPEL_LLAMA_CPP_SDIST`` at a copy of that sdist instead. Using the converter of the very
llama.cpp we run avoids the classic "converted with a newer llama.cpp, won't load" failure. Check or fetch
them with::

    python -m training.export.convert [--list]
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from doppel.errors import InputError
from doppel.paths import cache_dir

log = logging.getLogger(__name__)

DISTRIBUTION = "llama-cpp-python"
SDIST_ENV = "DOPPEL_LLAMA_CPP_SDIST"
HF_SCRIPT = "convert_hf_to_gguf.py"
LORA_SCRIPT = "convert_lora_to_gguf.py"
_VENDOR = "vendor/llama.cpp"
_WANTED_FILES = {HF_SCRIPT, LORA_SCRIPT, "LICENSE"}
_WANTED_DIRS = ("conversion/", "gguf-py/gguf/")
_MARKER = "doppel-sources.json"
_TAIL_LINES = 40


class ConversionError(RuntimeError):
    """A converter failed on input that passed our checks: a bug, or a model llama.cpp cannot handle."""


@dataclass(frozen=True)
class ConverterSources:
    """An extracted copy of the converters of one llama.cpp version."""

    version: str
    root: Path

    @property
    def name(self) -> str:
        """How a GGUF's ``doppel.converter`` key names these converters: ``llama-cpp-python 0.3.36``."""
        return f"{DISTRIBUTION} {self.version}"

    @property
    def gguf_py(self) -> Path:
        return self.root / "gguf-py"

    def script(self, name: str) -> Path:
        return self.root / name

    def supported_architectures(self) -> frozenset[str]:
        """The HF ``architectures`` names that ``convert_hf_to_gguf.py`` converts (read, not imported)."""
        return _architectures(self.root / "conversion" / "__init__.py")


def installed_version() -> str:
    """The installed llama-cpp-python's version (without a local ``+suffix``)."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(f"{DISTRIBUTION} is not installed: pip install {DISTRIBUTION}") from None
    return version.split("+", 1)[0]


def ensure_sources(version: str | None = None) -> ConverterSources:
    """The converters of ``version`` (default: the installed one), fetched and extracted on first use."""
    version = version or installed_version()
    target = cache_dir() / f"llama-cpp-{version}"
    if (target / _MARKER).is_file():
        return ConverterSources(version, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    # Parallel exports (or tests) share the cache: one fetches, the others wait and reuse it.
    with FileLock(str(target.parent / f"llama-cpp-{version}.lock")):
        if not (target / _MARKER).is_file():
            with tempfile.TemporaryDirectory(prefix="doppel-sdist-", dir=target.parent) as scratch:
                sdist = _local_sdist(version) or fetch_sdist(version, Path(scratch))
                extract_sources(sdist, target, version)
    return ConverterSources(version, target)


def fetch_sdist(version: str, into: Path) -> Path:
    """Download the llama-cpp-python sdist of ``version`` with pip into ``into``; returns the file."""
    log.info("fetching the %s %s sdist once for its converters (about 76 MB)", DISTRIBUTION, version)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
    command += ["--disable-pip-version-check", f"{DISTRIBUTION}=={version}", "-d", str(into)]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if finished.returncode != 0 or not found:
        reason = _last_line(finished.stderr) or f"pip exited with {finished.returncode}"
        raise InputError(
            f"cannot fetch the {DISTRIBUTION} {version} sdist for llama.cpp's converters ({reason}); "
            f"offline, download it elsewhere and set {SDIST_ENV}=/path/to/llama_cpp_python-{version}.tar.gz"
        )
    return found[0]


def extract_sources(sdist: Path, target: Path, version: str) -> None:
    """Copy the converter files out of the sdist into ``target``, which appears complete or not at all."""
    scratch = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    written = 0
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive:
                relative = extracted_path(member.name)
                if relative is None or not member.isfile():
                    continue
                destination = scratch.joinpath(*relative.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                if source is None:
                    continue
                with source, destination.open("wb") as handle:
                    shutil.copyfileobj(source, handle)
                written += 1
        if not (scratch / HF_SCRIPT).is_file() or not (scratch / "gguf-py" / "gguf").is_dir():
            raise InputError(f"{sdist}: not a {DISTRIBUTION} sdist with llama.cpp's converters in {_VENDOR}/")
        marker = {"version": version, "sdist": sdist.name, "files": written}
        (scratch / _MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)  # a copy without the marker is incomplete
        scratch.replace(target)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise InputError(f"{sdist}: cannot read the sdist ({error})") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("llama.cpp %s converters ready in %s (%d files)", version, target, written)


def extracted_path(name: str) -> PurePosixPath | None:
    """Where the sdist member ``name`` goes in the extracted copy; None for a member the converters do not need."""
    parts = PurePosixPath(name).parts
    vendor = PurePosixPath(_VENDOR).parts
    if len(parts) < 2 + len(vendor) or parts[1 : 1 + len(vendor)] != vendor or ".." in parts:
        return None
    relative = PurePosixPath(*parts[1 + len(vendor) :])
    text = relative.as_posix()
    if text in _WANTED_FILES or any(text.startswith(prefix) for prefix in _WANTED_DIRS):
        return relative
    return None


def check_architecture(sources: ConverterSources, hf_dir: Path) -> str:
    """The checkpoint's architecture, if llama.cpp converts it; else an :class:`InputError` naming what does."""
    config_path = hf_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{config_path}: unreadable model config ({error})") from None
    architectures = config.get("architectures") or []
    supported = sources.supported_architectures()
    for architecture in architectures:
        if architecture in supported:
            return str(architecture)
    causal = sorted(name for name in supported if name.endswith("ForCausalLM"))
    examples = ", ".join(
        name for name in ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM") if name in causal
    )
    named = ", ".join(architectures) or "none"
    raise InputError(
        f"{config_path}: architecture {named} is not supported by llama.cpp {sources.version}'s converter; "
        f"it converts {len(causal)} causal LMs such as {examples} (list: python -m training.export.convert --list)"
    )


def convert_model(
    sources: ConverterSources, hf_dir: Path, outfile: Path, outtype: str = "f16", model_name: str | None = None
) -> None:
    """``convert_hf_to_gguf.py HF_DIR --outfile OUT --outtype f16 [--model-name NAME]``."""
    command = [str(sources.script(HF_SCRIPT)), str(hf_dir), "--outfile", str(outfile), "--outtype", outtype]
    _run(sources, [*command, "--model-name", model_name] if model_name else command)
    _check_written(outfile, HF_SCRIPT)


def convert_lora(
    sources: ConverterSources, adapter_dir: Path, base_dir: Path, outfile: Path, outtype: str = "f16"
) -> None:
    """``convert_lora_to_gguf.py ADAPTER_DIR --base BASE_DIR --outfile OUT --outtype f16``."""
    command = [str(sources.script(LORA_SCRIPT)), str(adapter_dir), "--base", str(base_dir)]
    _run(sources, [*command, "--outfile", str(outfile), "--outtype", outtype])
    _check_written(outfile, LORA_SCRIPT)


def converter_env(sources: ConverterSources) -> dict[str, str]:
    """The converter's environment: our gguf-py first, no hub access (every input is a local directory)."""
    env = {key: value for key, value in os.environ.items() if key != "NO_LOCAL_GGUF"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(sources.gguf_py), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(sources: ConverterSources, arguments: list[str]) -> None:
    script = Path(arguments[0]).name
    log.debug("running %s", " ".join(arguments))
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    with subprocess.Popen(
        [sys.executable, *arguments],
        env=converter_env(sources),
        cwd=sources.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for raw_line in process.stdout:
            line = raw_line.rstrip()
            if line:
                tail.append(line)
                log.debug("%s: %s", script, line)
        code = process.wait()
    if code != 0:
        lines = list(tail)
        reason = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
        log.error("%s failed; its last lines:\n%s", script, "\n".join(lines))
        raise ConversionError(f"llama.cpp {sources.version} {script} failed (exit {code}): {reason.strip()}")


def _check_written(outfile: Path, script: str) -> None:
    if not outfile.is_file() or outfile.stat().st_size == 0:
        raise ConversionError(f"{script} reported success but wrote no {outfile.name}")


def _local_sdist(version: str) -> Path | None:
    override = os.environ.get(SDIST_ENV)
    if not override:
        return None
    path = Path(override).expanduser()
    if not path.is_file():
        raise InputError(f"{SDIST_ENV}={override}: no such file")
    if version not in path.name:
        raise InputError(f"{SDIST_ENV}={override}: expected the sdist of {DISTRIBUTION} {version}")
    return path


@functools.cache
def _architectures(registry: Path) -> frozenset[str]:
    """Keys of ``TEXT_MODEL_MAP`` in the ``conversion`` package, parsed without importing it (torch)."""
    tree = ast.parse(registry.read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP" and node.value is not None:
            return frozenset(ast.literal_eval(node.value))
    raise ConversionError(f"{registry}: no TEXT_MODEL_MAP; this llama.cpp lays out its converters differently")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    """Fetch the converters if needed and say where they are; ``--list`` prints the supported architectures."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sources = ensure_sources()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if "--list" in args:
        print("\n".join(sorted(sources.supported_architectures())))
    else:
        print(f"llama.cpp {sources.version} converters: {sources.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
