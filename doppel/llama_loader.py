"""Load a GGUF model into llama-cpp-python, safely on every CPU.

    from doppel.llama_loader import open_llama, open_model
    llm = open_llama(path, lora_path=adapter, n_ctx=512)      # the high-level llama_cpp.Llama
    model = open_model(path)                                  # a bare llama_model pointer, for the engine

llama.cpp repacks quantized weights at load time into CPU-specific layouts ("extra buffer types"). On a
CPU with AMX (Intel Sapphire Rapids and later), llama-cpp-python 0.3.36 built natively picks the AMX
layout, and decoding a q8_0 SmolLM2 from it crashes the process with a segmentation fault (seen on this
project's CI machine; the same file decodes fine with repacking off, and with it on a CPU without AMX).
llama-cpp-python does not expose the switch (``use_extra_bufts``), so it is turned off here on AMX CPUs.
Elsewhere repacking stays on: it is safe there and faster.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_AMX_FLAGS = {"amx_tile", "amx_int8", "amx_bf16"}


def open_llama(model_path: Path, *, lora_path: Path | None = None, **options: Any) -> Any:
    """``llama_cpp.Llama(model_path, lora_path=..., **options)``, without weight repacking on AMX CPUs."""
    from llama_cpp import Llama

    with weight_repacking(enabled=not cpu_has_amx()):
        return Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None, **options)


def open_model(model_path: Path) -> Any:
    """``llama_model_load_from_file``: a ``llama_model`` pointer (free it with ``llama_model_free``).

    For code that drives llama.cpp's C API itself (several sequences on one context), with the same
    repacking rule as :func:`open_llama`. A file llama.cpp cannot load raises ``ValueError``.
    """
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = not cpu_has_amx()
    model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), params)
    if not model:
        raise ValueError(f"{model_path}: llama.cpp could not load this model")
    return model


@functools.cache
def quiet_llama_logs() -> None:
    """Send llama.cpp's own log lines (hundreds per model load, on stderr) nowhere; once per process."""
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback
    def ignore(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    # Kept referenced by the cache of this function: llama.cpp calls it for as long as the process lives.
    quiet_llama_logs.callback = ignore  # type: ignore[attr-defined]
    llama_cpp.llama_log_set(ignore, ctypes.c_void_p(0))


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU advertises Intel AMX (Linux: /proc/cpuinfo; elsewhere: assumed not)."""
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return bool(_AMX_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


@contextlib.contextmanager
def weight_repacking(*, enabled: bool) -> Iterator[None]:
    """While a model loads: whether llama.cpp may repack its weights (its default: yes)."""
    import llama_cpp.llama_cpp as api

    if enabled:
        yield
        return
    default_params = api.llama_model_default_params

    def params_without_repacking() -> Any:
        params = default_params()
        params.use_extra_bufts = False
        return params

    # Llama.__init__ looks the function up on this module when it builds its parameters.
    api.llama_model_default_params = params_without_repacking
    try:
        yield
    finally:
        api.llama_model_default_params = default_params
