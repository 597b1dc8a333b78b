"""``doppel prepare EXPORT... --out DIR``: the command line of :mod:`training.prepare.pipeline`.

    doppel prepare ~/Downloads/Telegram\\ Desktop/DataExport_2026-01-01 --out dataset/
    doppel prepare result.json --out dataset/ --me "Anna" --session-gap 45m --no-scrub
    doppel prepare result.json --out dataset/ --config prepare.yaml

Every field of :class:`training.prepare.config.PrepareConfig` is a flag (built by :mod:`doppel.settings`);
flags override ``--config FILE``, which overrides the defaults.
"""

from __future__ import annotations

import argparse
from typing import Any

from doppel.errors import InputError
from doppel.settings import add_stage, given_values
from training.prepare.config import PrepareConfig


def register(subparsers: Any) -> None:
    """Add the ``prepare`` subcommand (called by :mod:`doppel.cli`)."""
    parser = add_stage(
        subparsers,
        "prepare",
        PrepareConfig,
        help="turn Telegram exports into a ChatML training set",
        description="Read Telegram Desktop JSON exports and write conversation sessions as a ChatML dataset.",
        handler=run,
    )
    parser.add_argument("--quiet", action="store_true", default=False, help="no progress bar and no report on stdout")


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """Merge the defaults, ``--config`` and the flags into one validated config."""
    values = given_values(args, PrepareConfig)
    if not values.get("exports"):
        raise InputError("EXPORT is required: result.json or its folder (or set exports in --config)")
    if "out" not in values:
        raise InputError("--out DIR is required (or set it in --config)")
    values["progress"] = values.get("progress", True) and not args.quiet
    return PrepareConfig.from_mapping(values)


def run(args: argparse.Namespace) -> int:
    """Handler of ``doppel prepare``: prepare the dataset, print the report unless ``--quiet``."""
    from training.prepare.pipeline import prepare

    result = prepare(config_from_args(args))
    if not args.quiet:
        print(result.report)
        print(f"\nwrote {result.out}")
    return 0
