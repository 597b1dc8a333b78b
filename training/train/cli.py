"""``doppel train``: the command-line face of :func:`training.train.loop.train`.

    doppel train DATASET --out RUN [--base ID_OR_PATH] [--method lora|full|qlora] [--max-steps N] [--epochs N]
                 [--config FILE] [--resume] [--help for every other setting]

Every field of :class:`training.train.config.TrainConfig` becomes a flag (``lora_r`` → ``--lora-r``) with its
description as help (:mod:`doppel.settings`). Flags override ``--config FILE``, which overrides the run's saved
``config.yaml`` when resuming, which overrides the defaults.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from doppel.errors import InputError


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand (called by :mod:`doppel.cli`)."""
    from doppel.settings import add_stage
    from training.train.config import TrainConfig

    add_stage(
        subparsers,
        "train",
        TrainConfig,
        help="fine-tune a base model on a prepared dataset (LoRA or full)",
        description="Fine-tune a base model on a dataset from `doppel prepare` and write a run directory "
        "(adapter or weights, metrics, loss curve, checkpoints).",
        handler=run,
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """Merge defaults, a resumed run's config, ``--config`` and the flags into one validated config."""
    from doppel.formats.run_dir import CONFIG_YAML
    from doppel.settings import given_values
    from training.train.config import TrainConfig

    values = given_values(args, TrainConfig)
    if values.get("resume") in (True, "true") and values.get("out"):
        saved = Path(values["out"]) / CONFIG_YAML
        if saved.is_file():
            values = {**TrainConfig.read_yaml(saved), **values}
    for required in ("dataset", "out"):
        if required not in values:
            raise InputError(
                f"{'DATASET' if required == 'dataset' else '--out RUN'} is required (or set it in --config)"
            )
    return TrainConfig.from_mapping(values)


def run(args: argparse.Namespace) -> int:
    """Handler of ``doppel train``: build the config, train, print the summary."""
    from training.train.loop import train

    if not getattr(args, "verbose", False):
        # accelerate narrates every file of every checkpoint at INFO; our own log and progress bar suffice.
        logging.getLogger("accelerate").setLevel(logging.WARNING)
    summary = train(config_from_args(args))
    print(summary.describe())
    return 0
