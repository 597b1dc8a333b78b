"""From settings to a running :class:`~serving.engine.engine.Engine`: the model (merged, or an adapter over the base
beside it), the personas, memory when asked for, and the backend (llama.cpp here, or a server by URL).

    engine = open_engine(EngineConfig(model=Path("model.gguf")))

Every bad input is a one-line :class:`~doppel.errors.InputError`, raised before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppel.errors import InputError
from serving.engine.config import EngineConfig
from serving.engine.engine import Engine, Examples
from serving.engine.personas import PersonaList, load_personas
from serving.engine.types import Backend

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelFiles:
    """What to load: the weights (a merged model, or the base) and the adapter, if any, with the metadata."""

    weights: Path
    adapter: Path | None
    metadata: dict[str, Any]

    @property
    def fine_tuned(self) -> bool:
        """Whether doppel trained it (its metadata names the personas it learnt)."""
        return bool(self.metadata.get("personas")) and self.metadata.get("role") in ("model", "adapter")


def model_files(model: Path) -> ModelFiles:
    """Check ``model`` is a GGUF; an adapter's base is the file its metadata names, beside it."""
    from doppel.formats.gguf_metadata import read_doppel_metadata

    if not model.is_file():
        raise InputError(f"{model}: no such file")
    with model.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise InputError(f"{model}: not a GGUF file")
    metadata = read_doppel_metadata(model)
    if metadata.get("role") != "adapter":
        return ModelFiles(model, None, metadata)
    base_name = str((metadata.get("adapter") or {}).get("base_file", ""))
    base = model.parent / base_name
    if not base_name or not base.is_file():
        raise InputError(f"{model}: a LoRA adapter whose base {base_name or '(unnamed)'} is not beside it")
    return ModelFiles(base, model, metadata)


def open_engine(config: EngineConfig) -> Engine:
    """The engine ``config`` describes; see the module docstring."""
    if config.model is None and config.engine_url is None:
        raise InputError("MODEL.gguf is required (or --engine-url URL)")
    files = model_files(config.model) if config.model is not None else None
    manifest = _manifest(config.dataset)
    personas = load_personas(config.model, manifest, config.dataset)
    if config.persona is not None:
        personas.resolve(config.persona)  # an unknown name fails now, not at the first message
    memory = _memory(config, files, personas)
    backend = _backend(config, files)
    return Engine(
        backend,
        personas,
        sampling=config.sampling,
        memory=memory,
        memory_examples=config.memory_examples,
        max_messages=config.max_messages,
    )


def _manifest(dataset: Path | None) -> dict[str, Any] | None:
    if dataset is None:
        return None
    from doppel.formats.dataset import load_manifest

    return load_manifest(dataset)


def _memory(config: EngineConfig, files: ModelFiles | None, personas: PersonaList) -> Examples | None:
    wanted = config.memory == "on" or (config.memory == "auto" and not (files is not None and files.fine_tuned))
    if config.memory == "on" and config.dataset is None:
        raise InputError("--memory on needs --dataset DIR (the past exchanges come from it)")
    if not wanted or config.dataset is None or config.memory_examples == 0:
        return None
    from serving.engine.memory import Memory

    return Memory.open(config.dataset)


def _backend(config: EngineConfig, files: ModelFiles | None) -> Backend:
    if config.engine_url is not None:
        from serving.engine.remote import RemoteBackend

        remote = RemoteBackend(config.engine_url, context_size=config.context_size)
        remote.check()
        return remote
    assert files is not None
    from serving.engine.llama import LlamaBackend

    return LlamaBackend(
        files.weights,
        adapter_path=files.adapter,
        context_size=config.context_size,
        chats=config.chats,
        threads=config.threads,
    )
