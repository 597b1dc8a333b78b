"""``doppel train``: the command-line face of :func:`training.train.loop.train`.

    doppel train DATASET --out RUN [--base ID_OR_PATH] [--method lora|full|qlora] [--max-steps N] [--epochs N]
                 [--config FILE] [--resume] [--help for every other setting]

Every field of :class:`training.train.config.TrainConfig` becomes a flag (``lora_r`` → ``--lora-r``) with its
description as help. Flags override ``--config FILE``, which overrides the run's saved ``config.yaml`` when
resuming, which overrides the defaults.
"""

from __future__ import annotations

import argparse
import logging
import typing
from pathlib import Path
from typing import Any

from doppel.errors import InputError

_POSITIONAL = "dataset"
_METAVARS = {
    "out": "RUN",
    "base": "ID_OR_PATH",
    "loss_scope": "SCOPE",
    "learning_rate": "LR",
    "warmup_ratio": "FRACTION",
    "weight_decay": "X",
    "max_grad_norm": "X",
    "lora_dropout": "P",
    "lora_target_modules": "NAMES",
    "attn_implementation": "KERNEL",
    "max_memory_gb": "GB",
}


def register(subparsers: Any) -> None:
    """Add the ``train`` subcommand (called by :mod:`doppel.cli`)."""
    from training.train.config import TrainConfig, flag_name

    parser = subparsers.add_parser(
        "train",
        help="fine-tune a base model on a prepared dataset (LoRA or full)",
        description="Fine-tune a base model on a dataset from `doppel prepare` and write a run directory "
        "(adapter or weights, metrics, loss curve, checkpoints).",
        argument_default=argparse.SUPPRESS,  # only flags actually given override the config file
    )
    parser.add_argument(
        _POSITIONAL, nargs="?", metavar="DATASET", help=TrainConfig.model_fields[_POSITIONAL].description
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML file of settings; flags override it")
    for name, field in TrainConfig.model_fields.items():
        if name == _POSITIONAL:
            continue
        help_text = (field.description or "") + _default_text(field.default, field.is_required())
        choices = _literal_choices(field.annotation)
        if field.annotation is bool:
            parser.add_argument(flag_name(name), dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            metavar = _METAVARS.get(name, "N") if choices is None else None
            parser.add_argument(flag_name(name), dest=name, choices=choices, metavar=metavar, help=help_text)
    parser.set_defaults(handler=run, stage="train")


def config_from_args(args: argparse.Namespace) -> Any:
    """Merge defaults, a resumed run's config, ``--config`` and the flags into one validated config."""
    from doppel.formats.run_dir import CONFIG_YAML
    from training.train.config import TrainConfig, from_mapping, read_yaml

    given = {name: getattr(args, name) for name in TrainConfig.model_fields if getattr(args, name, None) is not None}
    from_file = read_yaml(args.config) if getattr(args, "config", None) else {}
    values: dict[str, Any] = {**from_file, **given}
    if values.get("resume") in (True, "true") and values.get("out"):
        saved = Path(values["out"]) / CONFIG_YAML
        if saved.is_file():
            values = {**read_yaml(saved), **values}
    for required in (_POSITIONAL, "out"):
        if required not in values:
            raise InputError(
                f"{'DATASET' if required == _POSITIONAL else '--out RUN'} is required (or set it in --config)"
            )
    return from_mapping(values, origin="doppel train")


def run(args: argparse.Namespace) -> int:
    """Handler of ``doppel train``: build the config, train, print the summary."""
    from training.train.loop import train

    if not getattr(args, "verbose", False):
        # accelerate narrates every file of every checkpoint at INFO; our own log and progress bar suffice.
        logging.getLogger("accelerate").setLevel(logging.WARNING)
    summary = train(config_from_args(args))
    print(summary.describe())
    return 0


def _default_text(default: Any, required: bool) -> str:
    if required or default is None:
        return ""
    if isinstance(default, list):
        default = ",".join(default)
    return f" (default: {default})".replace("%", "%%")


def _literal_choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(choice) for choice in typing.get_args(annotation)]
    return None
