"""Read and check a run directory for export, and build the GGUF metadata and file names it carries forward.

A run directory (``doppel-run/1``, written by ``doppel train``; see :mod:`doppel.formats.run_dir`) must be
finished and complete before export starts: every missing or damaged piece is an :class:`InputError` that
names it, raised before anything heavy runs. Library only; :func:`training.export.pipeline.export` starts with it.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppel import __version__
from doppel.chatml import MESSAGE_PREFIX
from doppel.errors import InputError
from doppel.formats.gguf_metadata import FORMAT
from doppel.formats.run_dir import RUN_FORMAT, RunDir

GGUF_SUFFIX = ".gguf"
ADAPTER_METHODS = ("lora", "qlora")
METHODS = (*ADAPTER_METHODS, "full")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_REQUIRED_KEYS = ("method", "base", "loss_scope", "dataset")


@dataclass(frozen=True)
class ExportableRun:
    """A finished run, checked: its ``run.json`` and where its model lives."""

    path: Path
    info: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.info["method"])

    @property
    def is_adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    @property
    def model_dir(self) -> Path:
        return RunDir(self.path).model_dir

    @property
    def base(self) -> dict[str, str]:
        return dict(self.info["base"])

    @property
    def added_tokens(self) -> list[dict[str, Any]]:
        return list(self.info.get("added_tokens") or [])

    @property
    def vocab_size(self) -> int | None:
        value = self.info.get("vocab_size")
        return int(value) if value is not None else None

    @property
    def dataset_path(self) -> Path | None:
        value = self.info.get("dataset_path")
        return Path(value) if value else None

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self.info["dataset"])


def load_run(path: Path) -> ExportableRun:
    """Check that ``path`` holds a finished, complete run; an :class:`InputError` names what is missing."""
    if not path.is_dir():
        raise InputError(f"{path}: no such run directory (train one with `doppel train`)")
    run_json = RunDir(path).run_json
    if not run_json.is_file():
        raise InputError(f"{path}: not a doppel run directory, run.json is missing")
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{run_json}: unreadable ({error})") from None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise InputError(f"{run_json}: not a {RUN_FORMAT} run description")
    missing = [key for key in _REQUIRED_KEYS if key not in info]
    if "base" in info and (not isinstance(info["base"], dict) or not {"source", "sha256"} <= set(info["base"])):
        missing.append("base.source/base.sha256")
    if missing:
        raise InputError(f"{run_json}: incomplete, missing {', '.join(missing)}")
    if info["method"] not in METHODS:
        raise InputError(f"{run_json}: unknown method {info['method']!r} (export supports {', '.join(METHODS)})")
    if not info.get("finished"):
        raise InputError(
            f"{path}: the run has not finished (step {info.get('step', 0)}); finish it with `doppel train ... --resume`"
        )
    run = ExportableRun(path=path, info=info)
    _check_model_dir(run)
    return run


def _check_model_dir(run: ExportableRun) -> None:
    model_dir = run.model_dir
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: missing; the run has no final model")
    required = ["adapter_config.json", "adapter_model.safetensors"] if run.is_adapter else ["config.json"]
    missing = [name for name in required if not (model_dir / name).is_file()]
    if not run.is_adapter and not list(model_dir.glob("*.safetensors")):
        missing.append("model.safetensors")
    if not any((model_dir / name).is_file() for name in _TOKENIZER_FILES):
        missing.append("the tokenizer (tokenizer.json)")
    if missing:
        raise InputError(f"{model_dir}: incomplete {run.method} model, missing {', '.join(missing)}")
    for name in ("adapter_config.json", "config.json"):
        if (model_dir / name).is_file():
            try:
                json.loads((model_dir / name).read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise InputError(f"{model_dir / name}: damaged ({error})") from None
    for weights in sorted(model_dir.glob("*.safetensors")):
        check_safetensors(weights)


def check_safetensors(path: Path) -> dict[str, dict[str, Any]]:
    """The tensors a safetensors file's header describes (name: dtype, shape, data_offsets), read from the
    header only; a truncated or overwritten file is an :class:`InputError`."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(length))
        tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
        end = max((int(entry["data_offsets"][1]) for entry in tensors.values()), default=0)
    except (struct.error, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: damaged safetensors file ({error})") from None
    if 8 + length + end > size:
        raise InputError(f"{path}: truncated ({size:,} bytes, the header promises {8 + length + end:,})")
    return tensors


def adapter_config(run: ExportableRun) -> dict[str, Any]:
    return dict(json.loads((run.model_dir / "adapter_config.json").read_text(encoding="utf-8")))


def check_adapter_convertible(run: ExportableRun) -> None:
    """``--adapter-only`` needs an adapter llama.cpp applies as trained: plain LoRA over the unchanged base."""
    if not run.is_adapter:
        raise InputError(f"{run.path}: --adapter-only needs a LoRA run; this is a {run.method} fine-tune")
    if run.added_tokens:
        names = ", ".join(str(token["content"]) for token in run.added_tokens)
        raise InputError(
            f"{run.path}: the run added {names} to the vocabulary, which a llama.cpp LoRA adapter cannot carry; "
            "export without --adapter-only"
        )
    config = adapter_config(run)
    unsupported = [
        name
        for name, present in (
            ("DoRA", config.get("use_dora")),
            ("rsLoRA", config.get("use_rslora")),
            ("per-module ranks", config.get("rank_pattern")),
            ("per-module alphas", config.get("alpha_pattern")),
            ("trainable tokens", config.get("trainable_token_indices")),
            ("modules_to_save", config.get("modules_to_save")),
        )
        if present
    ]
    if unsupported:
        raise InputError(
            f"{run.model_dir / 'adapter_config.json'}: the adapter uses {', '.join(unsupported)}, which "
            "llama.cpp's LoRA adapters do not support; export without --adapter-only"
        )


def build_metadata(
    run: ExportableRun, role: str, *, converter: str | None = None, base_file: str | None = None
) -> dict[str, Any]:
    """The nested ``doppel.*`` metadata for a file of ``role`` ("model", "adapter" or "base")."""
    base = run.base
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "role": role,
        "version": __version__,
        "converter": converter,
        "base": {"source": base["source"], "sha256": base["sha256"]},
    }
    if role == "base":
        return metadata
    manifest = run.manifest
    message_format = dict(manifest.get("message_format") or {})
    personas = [
        {
            "id": str(speaker.get("id", "")),
            "name": str(speaker["name"]),
            "messages": int(speaker.get("messages", 0)),
            "turns": int(speaker.get("turns", 0)),
            "is_owner": bool(speaker.get("is_owner", False)),
        }
        for speaker in manifest.get("speakers", [])
    ]
    metadata.update(
        {
            "owner": {"id": str(manifest["owner"]["id"]), "name": str(manifest["owner"]["name"])},
            "personas": personas,
            "message_format": {
                "template": str(message_format.get("template", "chatml")),
                "prefix": str(message_format.get("message_prefix", MESSAGE_PREFIX)),
                "roles": str(message_format.get("roles", "speaker names")),
            },
            "loss_scope": str(run.info["loss_scope"]),
            "method": run.method,
            "dataset": {"sha256": str((manifest.get("source") or {}).get("sha256", ""))},
            "run": {"step": int(run.info.get("step", 0))},
        }
    )
    if base_file is not None:
        metadata["adapter"] = {"base_file": base_file}
    return metadata


def base_checkpoint(run: ExportableRun) -> Path:
    """The base's HF checkpoint: where training found it, else resolved again (and checked to be the same)."""
    base = run.base
    recorded = Path(base["hf_dir"]) if base.get("hf_dir") else None
    if recorded is not None and (recorded / "config.json").is_file():
        return recorded
    from training.train.base_model import resolve_base

    resolved = resolve_base(base["source"])
    if resolved.sha256 != base["sha256"]:
        raise InputError(
            f"{run.path}: the base {base['source']} is not the one this run trained on "
            f"(sha256 {resolved.sha256[:12]}…, the run says {base['sha256'][:12]}…)"
        )
    return resolved.hf_dir


def base_name(run: ExportableRun) -> str:
    """A file-name-safe short name of the base (``SmolLM2-135M-Instruct.Q4_1``, ``Qwen2.5-7B-Instruct``)."""
    name = Path(run.base["source"].rstrip("/")).name
    name = name[: -len(GGUF_SUFFIX)] if name.lower().endswith(GGUF_SUFFIX) else name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "base"


def base_file_name(run: ExportableRun, quant: str) -> str:
    """``base-<name>-<hash>.<quant>.gguf``: one per base, quantization and identity, shared by adapters."""
    return f"base-{base_name(run)}-{run.base['sha256'][:8]}.{quant}{GGUF_SUFFIX}"
