"""The one settings schema of ``doppel prepare``: every field is a command-line flag and a YAML key.

Precedence, lowest first: the defaults here, ``--config FILE``, then the flags given. The flags are built
from this schema by :mod:`doppel.settings` (the pattern every stage shares) in :mod:`training.prepare.cli`::

    doppel prepare result.json --out dataset/ --config prepare.yaml --session-gap 45m

In a YAML file, durations and dates are written as on the command line (``session_gap: 45m``,
``since: 2024-01-31``). The dataset's manifest records these settings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator

from doppel.errors import InputError
from doppel.settings import Cli, StageSettings
from training.prepare.sessions import DEFAULT_MAX_TOKENS, DEFAULT_SESSION_GAP
from training.telegram.chat_types import ALL_CHAT_TYPES, DEFAULT_CHAT_TYPES

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
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


class PrepareConfig(StageSettings):
    """Every setting of the stage; the CLI fills it from flags and ``--config``, tests build it directly."""

    exports: Annotated[tuple[Path, ...], Cli(positional="*", metavar="EXPORT")] = Field(
        description="result.json or its folder; several are merged"
    )
    out: Annotated[Path, Cli(metavar="OUT")] = Field(description="dataset directory to write")
    me: Annotated[str | None, Cli(metavar="ME")] = Field(
        None, description="the owner's name or id, when the export does not say (single-chat exports)"
    )
    session_gap: Annotated[int, Cli(metavar="DURATION", parse=parse_duration, default_help="30m")] = Field(
        DEFAULT_SESSION_GAP, description="silence that starts a new session"
    )
    max_tokens: Annotated[int, Cli(metavar="MAX_TOKENS")] = Field(
        DEFAULT_MAX_TOKENS, description="longer sessions are split into overlapping windows"
    )
    overlap_tokens: Annotated[int | None, Cli(metavar="OVERLAP_TOKENS", default_help="max-tokens/4")] = Field(
        None, description="context repeated at the start of each next window"
    )
    tokenizer: Annotated[Path | None, Cli(metavar="TOKENIZER")] = Field(
        None, description="count tokens with this HF tokenizer directory or GGUF file instead of estimating"
    )
    val_fraction: Annotated[float, Cli(metavar="VAL_FRACTION")] = Field(
        0.05, description="most recent share of sessions held out for validation"
    )
    scrub: Annotated[bool, Cli(default_help="on")] = Field(
        True, description="replace phone numbers, e-mails, card numbers and IBANs with placeholders"
    )
    blocklist: Annotated[Path | None, Cli(metavar="BLOCKLIST")] = Field(
        None, description="drop messages containing any word or phrase in this file"
    )
    include: Annotated[tuple[str, ...], Cli(append=True, metavar="CHAT")] = Field(
        (), description="only these chats (name or id; repeatable); any chat type"
    )
    exclude: Annotated[tuple[str, ...], Cli(append=True, metavar="CHAT")] = Field(
        (), description="skip these chats (repeatable)"
    )
    chat_types: Annotated[tuple[str, ...], Cli(metavar="CHAT_TYPES")] = Field(
        DEFAULT_CHAT_TYPES, description=f"comma-separated chat types to use (known: {', '.join(ALL_CHAT_TYPES)})"
    )
    since: Annotated[int | None, Cli(metavar="SINCE", parse=parse_date)] = Field(
        None, description="only messages from this date on (YYYY-MM-DD, UTC)"
    )
    until: Annotated[int | None, Cli(metavar="UNTIL", parse=parse_date)] = Field(
        None, description="only messages before this date"
    )
    keep_forwarded: bool = Field(False, description="keep forwarded messages (not the sender's words)")
    progress: Annotated[bool, Cli(hidden=True)] = Field(True, description="show a progress bar")
    workers: Annotated[int | None, Cli(hidden=True)] = Field(
        None, description="processes for pass 1; None: up to 2 when the export is big enough"
    )

    @field_validator("session_gap", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _parsed(parse_duration, value) if isinstance(value, str) else value

    @field_validator("since", "until", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, dt.date):  # YAML reads an unquoted 2024-01-31 as a date
            value = value.isoformat()
        return _parsed(parse_date, value) if isinstance(value, str) else value

    @field_validator("chat_types", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def window_overlap(self) -> int:
        """The overlap actually used: ``overlap_tokens``, or a quarter of ``max_tokens``."""
        return self.overlap_tokens if self.overlap_tokens is not None else self.max_tokens // 4

    def validate_values(self) -> None:
        """The checks that need more than one field's type; each a one-line :class:`InputError`."""
        if not self.exports:
            raise InputError("no export given")
        if self.session_gap <= 0:
            raise InputError(f"--session-gap must be positive, got {self.session_gap} s")
        if self.max_tokens < 32:
            raise InputError(f"--max-tokens must be at least 32, got {self.max_tokens}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")
        if not 0 <= self.val_fraction < 1:
            raise InputError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InputError("--since must be earlier than --until")
        unknown = set(self.chat_types) - set(ALL_CHAT_TYPES)
        if unknown:
            raise InputError(f"unknown chat type(s) {', '.join(sorted(unknown))}; known: {', '.join(ALL_CHAT_TYPES)}")


def _parsed(parse: Any, text: str) -> int:
    try:
        return int(parse(text))
    except argparse.ArgumentTypeError as error:
        raise ValueError(str(error)) from None
