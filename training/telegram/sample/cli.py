"""The ``doppel sample-export`` subcommand: write a synthetic Telegram export to try the pipeline on.

    doppel sample-export OUT.json [--seed N] [--messages N]

The work is done by :func:`training.telegram.sample.write_sample_export`; this module only parses
arguments and prints one summary line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from doppel.errors import InputError
from training.telegram.sample import DEFAULT_MESSAGES, MIN_MESSAGES, write_sample_export


def register(subparsers: Any) -> None:
    """Add ``sample-export`` to the ``doppel`` command's subparsers."""
    parser = subparsers.add_parser(
        "sample-export",
        help="write a synthetic Telegram Desktop export (result.json) to try doppel on",
        description=(
            "Write a realistic, entirely synthetic Telegram Desktop full-account export: the owner, "
            "seven friends with distinct writing styles, groups, channels, media and the edge cases of "
            "real exports. The same seed and message count give the same file."
        ),
    )
    parser.add_argument("out", metavar="OUT", type=Path, help="where to write the export, e.g. export.json")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--messages",
        type=int,
        default=DEFAULT_MESSAGES,
        metavar="N",
        help=f"messages across all chats, at least {MIN_MESSAGES} (default: {DEFAULT_MESSAGES})",
    )
    parser.set_defaults(handler=run, stage="sample-export")


def run(args: argparse.Namespace) -> int:
    """Write the export and print where, how many chats and messages, and how big."""
    if args.messages < MIN_MESSAGES:
        raise InputError(f"--messages must be at least {MIN_MESSAGES} (got {args.messages})")
    summary = write_sample_export(args.out, seed=args.seed, messages=args.messages)
    print(
        f"{summary.path}: {summary.chats + summary.left_chats} chats, {summary.messages} messages, "
        f"{summary.size_bytes / 1e6:.1f} MB"
    )
    return 0
