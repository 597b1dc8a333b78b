"""``doppel prepare``: Telegram Desktop exports in, a ChatML dataset (Hugging Face ``save_to_disk`` layout) out.

    from training.prepare import PrepareConfig, prepare
    prepare(PrepareConfig(exports=(Path("result.json"),), out=Path("dataset")))

The modules, in the order of the passes: ``config`` (the settings), ``reader`` (pass 1: exports to clean
messages), ``sessions`` and ``speakers`` (cutting sessions, naming speakers), ``scrub`` (privacy), ``spill``
and ``framed`` (sessions on disk between passes), ``workers`` (passes 1 and 3 on two cores), ``decide``
(pass 2), ``rows`` and ``writer`` (pass 3: ChatML rows into Arrow files), ``manifest``, ``report``,
``progress`` and ``output``; ``pipeline`` runs them, ``cli`` is the command. Names load on first use, so
``doppel --help`` does not import the stage.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PrepareConfig", "PrepareResult", "prepare"]

_HOMES = {"PrepareConfig": "training.prepare.config", "PrepareResult": "training.prepare.pipeline"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES.get(name, "training.prepare.pipeline")), name)
