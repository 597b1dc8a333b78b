"""The ``export`` stage: a run from ``doppel train`` in, a GGUF file for llama.cpp out (``doppel export``).

What it offers, imported on first use (importing the package, or its CLI, costs nothing heavy):

- :func:`export` runs the stage (:mod:`training.export.pipeline`);
- :class:`ExportConfig` are its settings, the flags of ``doppel export`` (:mod:`training.export.config`);
- :class:`ExportSummary` is what it returns: the files written, their sizes, the verification
  (:mod:`training.export.summary`);
- :class:`ConversionError`, :class:`QuantizeError` and :class:`VerificationError` are how a conversion that
  fails or does not verify is reported (the CLI's exit code 1).

Its pieces, by role: ``run`` (reading the run directory), ``checks`` (the up-front checks), ``merge`` (the
trained model in transformers), ``convert`` (llama.cpp's converters), ``quantize``, ``verify``, ``scratch``
(scratch space), ``job`` (the steps every export shares), ``adapter`` (``--adapter-only``), ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.export.config import ExportConfig
    from training.export.convert import ConversionError
    from training.export.pipeline import export
    from training.export.quantize import QuantizeError
    from training.export.summary import ExportSummary
    from training.export.verify import VerificationError

__all__ = ["ConversionError", "ExportConfig", "ExportSummary", "QuantizeError", "VerificationError", "export"]

# Where each public name lives; its module is imported when the name is first asked for (PEP 562): the
# pipeline imports numpy (and torch and llama.cpp once it runs), and `doppel --help` must not pay for them.
_HOMES = {
    "ConversionError": "training.export.convert",
    "ExportConfig": "training.export.config",
    "ExportSummary": "training.export.summary",
    "QuantizeError": "training.export.quantize",
    "VerificationError": "training.export.verify",
    "export": "training.export.pipeline",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
