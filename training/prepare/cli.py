"""``doppel prepare EXPORT... --out DIR``: the command line of :mod:`training.prepare.pipeline`.

doppel prepare ~/Downloads/Telegram\\ Desktop/DataExport_2026-01-01 --out dataset/
doppel prepare result.json --out dataset/ --me "Anna" --session-gap 45m --no-scrub
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from pathlib import Path

from doppel.errors import InputError
from training.prepare.pipeline import ALL_CHAT_TYPES, DEFAULT_CHAT_TYPES, PrepareConfig, prepare
from training.prepare.sessions import DEFAULT_MAX_TOKENS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 60, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``1d``; a bare number means minutes."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30m, 2h, 90s)")
    return round(float(match.group(1)) * _UNITS[match.group(2)])


def parse_date(text: str) -> int:
    """``2024-01-31`` or ``2024-01-31T12:00`` (UTC unless an offset is given) → unix seconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="turn Telegram exports into a ChatML training set",
        description="Read Telegram Desktop JSON exports and write conversation sessions as a ChatML dataset.",
    )
    parser.add_argument(
        "exports",
        nargs="+",
        type=Path,
        metavar="EXPORT",
        help="result.json or its folder; several are merged",
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset directory to write")
    parser.add_argument("--me", help="the owner's name or id, when the export does not say (single-chat exports)")
    parser.add_argument(
        "--session-gap",
        type=parse_duration,
        default=30 * 60,
        metavar="DURATION",
        help="silence that starts a new session (default 30m)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_MAX_TOKENS,
        help="longer sessions are split into overlapping windows (default %(default)s)",
    )
    parser.add_argument(
        "--overlap-tokens",
        type=int,
        default=None,
        help="context repeated at the start of each next window (default max-tokens/4)",
    )
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="count tokens with this HF tokenizer directory or GGUF file instead of estimating",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="most recent share of sessions held out for validation (default %(default)s)",
    )
    parser.add_argument(
        "--scrub",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replace phone numbers, e-mails, card numbers and IBANs with placeholders (default on)",
    )
    parser.add_argument("--blocklist", type=Path, help="drop messages containing any word or phrase in this file")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="CHAT",
        help="only these chats (name or id; repeatable); any chat type",
    )
    parser.add_argument("--exclude", action="append", default=[], metavar="CHAT", help="skip these chats (repeatable)")
    parser.add_argument(
        "--chat-types",
        default=",".join(DEFAULT_CHAT_TYPES),
        help=f"comma-separated chat types to use (default %(default)s; known: {', '.join(ALL_CHAT_TYPES)})",
    )
    parser.add_argument("--since", type=parse_date, help="only messages from this date on (YYYY-MM-DD, UTC)")
    parser.add_argument("--until", type=parse_date, help="only messages before this date")
    parser.add_argument(
        "--keep-forwarded", action="store_true", help="keep forwarded messages (not the sender's words)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no report on stdout")
    parser.set_defaults(handler=run, stage="prepare")


def run(args: argparse.Namespace) -> int:
    if args.max_tokens is not None and args.max_tokens <= 0:
        raise InputError("--max-tokens must be positive")
    config = PrepareConfig(
        exports=tuple(args.exports),
        out=args.out,
        me=args.me,
        session_gap=args.session_gap,
        max_tokens=args.max_tokens,
        overlap_tokens=args.overlap_tokens,
        tokenizer=args.tokenizer,
        val_fraction=args.val_fraction,
        scrub=args.scrub,
        blocklist=args.blocklist,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        chat_types=tuple(part.strip() for part in args.chat_types.split(",") if part.strip()),
        since=args.since,
        until=args.until,
        keep_forwarded=args.keep_forwarded,
        progress=not args.quiet,
    )
    result = prepare(config)
    if not args.quiet:
        print(result.report)
        print(f"\nwrote {result.out}")
    return 0
