"""Quantize an f16 GGUF through llama-cpp-python's C API (``llama_model_quantize``): no llama.cpp binary needed.

llama.cpp copies every metadata key of the source into the quantized file, doppel's included. Library only;
:mod:`training.export.job` uses it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from doppel.system import usable_cpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quant:
    """A quantization doppel offers: llama.cpp's file type and roughly how many bits a weight takes."""

    name: str
    ftype: str  # the llama_cpp constant
    bits_per_weight: float  # for the disk-space estimate; small models keep more tensors at higher precision


QUANTS: dict[str, Quant] = {
    quant.name: quant
    for quant in (
        Quant("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M", 5.0),
        Quant("q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M", 5.8),
        Quant("q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K", 6.7),
        Quant("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", 8.5),
        Quant("f16", "LLAMA_FTYPE_MOSTLY_F16", 16.0),
    )
}
DEFAULT_QUANT = "q4_k_m"
F16 = "f16"


class QuantizeError(RuntimeError):
    """llama.cpp refused to quantize the file."""


def file_type(quant: str) -> int:
    """llama.cpp's ``general.file_type`` value for ``quant``."""
    import llama_cpp

    return int(getattr(llama_cpp, QUANTS[quant].ftype))


def quantize(src: Path, dst: Path, quant: str) -> None:
    """Write ``src`` (an f16 GGUF) quantized to ``quant`` into ``dst``."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type(quant)
    params.nthread = usable_cpus()
    with _quiet_llama_cpp():
        code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if code != 0 or not dst.is_file():
        raise QuantizeError(
            f"llama.cpp could not quantize {src.name} to {quant} (llama_model_quantize returned {code})"
        )


@contextlib.contextmanager
def _quiet_llama_cpp() -> Iterator[None]:
    """llama.cpp logs every tensor it quantizes (~1,400 lines for a small model) through llama-cpp-python's
    logger, which prints everything until some ``Llama(verbose=False)`` quiets it: keep it for --verbose.

    Above CRITICAL, because llama-cpp-python 0.3.x maps ggml's log levels with an older numbering (a ggml
    warning arrives as ERROR). A failure still shows: llama_model_quantize's return code raises.
    """
    logger = logging.getLogger("llama-cpp-python")
    level = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)
