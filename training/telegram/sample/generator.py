"""Write the whole sample export: the account part, then every chat, streamed to a temporary file and renamed.

    doppel sample-export OUT.json [--seed N] [--messages N]

The same ``seed`` and ``messages`` give the same bytes. Messages are written one by one as they are made, so
a million messages (about 420 MB) need only a few tens of MB of memory.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from types import MappingProxyType

from training.telegram.sample.account import ABOUT_CHATS, ABOUT_LEFT, preamble
from training.telegram.sample.cast import Context
from training.telegram.sample.chats import chat_plans
from training.telegram.sample.conversation import allocate, write_chat
from training.telegram.sample.writer import Output

#: Fewer messages could not hold every chat's scripted edge cases.
MIN_MESSAGES = 100
DEFAULT_MESSAGES = 20_000


@dataclass(frozen=True)
class SampleExportSummary:
    """What :func:`write_sample_export` wrote."""

    path: Path
    owner_id: int
    owner_name: str
    #: Number of chats in ``chats.list`` and in ``left_chats.list``.
    chats: int
    left_chats: int
    #: Every message object written, service messages included.
    messages: int
    #: ``from_id`` (``"user123"``, ``"channel456"``) → non-service messages sent.
    per_speaker: Mapping[str, int]
    #: ``from_id`` → persona key of :data:`STYLE_OF` (owner and the seven friends).
    styles: Mapping[str, str]
    size_bytes: int


def write_sample_export(path: Path, *, seed: int = 0, messages: int = DEFAULT_MESSAGES) -> SampleExportSummary:
    """Write a synthetic full-account export of ``messages`` messages to ``path`` (see the package doc)."""
    if messages < MIN_MESSAGES:
        raise ValueError(f"need at least {MIN_MESSAGES} messages to fit every edge case, got {messages}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n", buffering=1 << 20) as handle:
            out = Output(handle)
            ctx = Context(out, rng)
            plans = chat_plans(ctx)
            counts = allocate(plans, messages)
            out.write(preamble(ctx))
            n_chats = n_left = 0
            for left in (False, True):
                selected = [(plan, n) for plan, n in zip(plans, counts, strict=True) if plan.left is left]
                key, about = ("left_chats", ABOUT_LEFT) if left else ("chats", ABOUT_CHATS)
                out.write(f',\n "{key}": {{\n  "about": {encode_basestring(about)},\n  "list": [')
                for i, (plan, n) in enumerate(selected):
                    if i:
                        out.write(",")
                    # Each chat draws from its own stream, so the chats do not shift one another.
                    write_chat(ctx, plan, n, random.Random(rng.getrandbits(64)))
                out.write("\n  ]\n }")
                if left:
                    n_left = len(selected)
                else:
                    n_chats = len(selected)
            out.write("\n}")
            out.flush()
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    friends = {
        "owner": ctx.owner,
        "dima": ctx.dima,
        "oleg": ctx.oleg,
        "margaret": ctx.margaret,
        "sam": ctx.sam,
        "priya": ctx.priya,
        "edward": ctx.edward,
        "kate": ctx.kate,
    }
    return SampleExportSummary(
        path=path,
        owner_id=ctx.owner_id,
        owner_name=ctx.owner.name or "",
        chats=n_chats,
        left_chats=n_left,
        messages=out.messages,
        per_speaker=MappingProxyType(dict(out.per_speaker.most_common())),
        styles=MappingProxyType({peer.from_id: key for key, peer in friends.items()}),
        size_bytes=path.stat().st_size,
    )
