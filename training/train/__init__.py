"""The ``train`` stage: fine-tune a base model on a prepared dataset and write a run directory.

    doppel train DATASET --out RUN [--base ID_OR_PATH] [--method lora|full|qlora] [--max-steps N] ...

What it offers, by module (each name below can also be imported from this package):

* :func:`train` (:mod:`~training.train.loop`): the stage as a function of its settings; ``StepCallback``
  observes each optimizer step. :class:`RunSummary` (:mod:`~training.train.summary`) is what it returns.
* :class:`TrainConfig` (:mod:`~training.train.config`): the one settings schema, every field a flag and a YAML key.
* :class:`LossScope` (:mod:`~training.train.labels`): whose turns are supervised.
* :func:`resolve_base` and :data:`DEFAULT_BASE` (:mod:`~training.train.base_model`): the base model as a local
  Hugging Face checkpoint, shared with the export stage.

The rest: :mod:`~training.train.cli` (the command), :mod:`~training.train.data` (tokenized splits and the
batch plan), :mod:`~training.train.packing`, :mod:`~training.train.loss`, :mod:`~training.train.attention`,
:mod:`~training.train.model`, :mod:`~training.train.memory`, :mod:`~training.train.optimizer`,
:mod:`~training.train.evaluation`, :mod:`~training.train.checkpoints` and :mod:`~training.train.outputs`.

Importing the package is cheap: a name is imported from its module (torch and all) only when first used, so
``doppel --help`` never pays for the training stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.train.base_model import DEFAULT_BASE, resolve_base
    from training.train.config import TrainConfig
    from training.train.labels import LossScope
    from training.train.loop import StepCallback, train
    from training.train.summary import RunSummary

__all__ = ["DEFAULT_BASE", "LossScope", "RunSummary", "StepCallback", "TrainConfig", "resolve_base", "train"]

_EXPORTS = {
    "DEFAULT_BASE": "training.train.base_model",
    "LossScope": "training.train.labels",
    "RunSummary": "training.train.summary",
    "StepCallback": "training.train.loop",
    "TrainConfig": "training.train.config",
    "resolve_base": "training.train.base_model",
    "train": "training.train.loop",
}


def __getattr__(name: str) -> Any:
    """PEP 562: import a public name from its module on first use, then keep it here."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
