"""The files between the stages, each read and written in one place:

- ``doppel.formats.dataset``: the prepared dataset (``manifest.json``, the train and validation splits), written
  by ``doppel prepare`` and read by training, evaluation and the engine's memory;
- ``doppel.formats.run_dir``: the run directory ``doppel train`` writes and ``doppel export`` reads;
- ``doppel.formats.gguf_metadata``: the ``doppel.*`` keys of an exported GGUF (owner, personas, message format).

Names load on first use: the dataset format imports pyarrow, which a bot answering messages may never need.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "DATASET_FORMAT": "doppel.formats.dataset",
    "PreparedDataset": "doppel.formats.dataset",
    "load_manifest": "doppel.formats.dataset",
    "load_prepared": "doppel.formats.dataset",
    "RUN_FORMAT": "doppel.formats.run_dir",
    "RunDir": "doppel.formats.run_dir",
    "read_doppel_metadata": "doppel.formats.gguf_metadata",
    "write_with_metadata": "doppel.formats.gguf_metadata",
}
__all__ = [
    "DATASET_FORMAT",
    "RUN_FORMAT",
    "PreparedDataset",
    "RunDir",
    "load_manifest",
    "load_prepared",
    "read_doppel_metadata",
    "write_with_metadata",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
