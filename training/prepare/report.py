"""What ``doppel prepare`` did, in numbers: counters it fills while running, and the printed report.

Only counts and speaker names appear here, never message text.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_HISTOGRAM_EDGES = (2, 4, 8, 16, 32, 64, 128)
_BAR_WIDTH = 40


SINGLE_TURN = "a single turn"  # why a session is dropped before pass 2: nobody answers anybody


@dataclass
class PrepareStats:
    files: list[str] = field(default_factory=list)
    sha256: str = ""
    messages_read: int = 0  # in the chats that were used
    messages_in_skipped_chats: int = 0
    kept_messages: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    scrubbed: Counter[str] = field(default_factory=Counter)
    chats_read: int = 0
    chats_used: int = 0
    chats_skipped: Counter[str] = field(default_factory=Counter)
    sessions_found: int = 0
    sessions_kept: int = 0
    sessions_dropped: Counter[str] = field(default_factory=Counter)
    windows: int = 0
    turns: int = 0
    train_rows: int = 0
    validation_rows: int = 0
    seconds: float = 0.0
    session_messages: list[int] = field(default_factory=list, repr=False)
    window_tokens: list[int] = field(default_factory=list, repr=False)

    def add_sessions(self, found: int, single_turn: int) -> None:
        """Count sessions cut in pass 1, of which ``single_turn`` have one turn only (and so are dropped)."""
        self.sessions_found += found
        if single_turn:
            self.sessions_dropped[SINGLE_TURN] += single_turn

    def counts(self) -> dict[str, Any]:
        """The machine-readable part of the report (stored in the manifest)."""
        owner_silent = self.sessions_found - self.sessions_kept - self.sessions_dropped[SINGLE_TURN]
        sessions_dropped = dict(self.sessions_dropped)
        if owner_silent:
            sessions_dropped["owner does not answer"] = owner_silent
        return {
            "messages_read": self.messages_read,
            "messages_in_skipped_chats": self.messages_in_skipped_chats,
            "messages_kept": self.kept_messages,
            "messages_dropped": dict(sorted(self.dropped.items(), key=lambda item: -item[1])),
            "scrubbed": dict(self.scrubbed),
            "chats_read": self.chats_read,
            "chats_used": self.chats_used,
            "chats_skipped": dict(self.chats_skipped),
            "sessions_found": self.sessions_found,
            "sessions_kept": self.sessions_kept,
            "sessions_dropped": sessions_dropped,
            "windows": self.windows,
            "turns": self.turns,
            "max_window_tokens": max(self.window_tokens, default=0),
        }


def session_length_histogram(lengths: list[int]) -> list[tuple[str, int]]:
    """Sessions bucketed by message count: 2–3, 4–7, ..., 128+."""
    buckets = Counter[int]()
    for length, sessions in Counter(lengths).items():  # a million messages make ~100,000 sessions
        buckets[max(bisect_right(_HISTOGRAM_EDGES, length) - 1, 0)] += sessions
    rows = []
    for bucket, low in enumerate(_HISTOGRAM_EDGES):
        label = f"{low}+" if bucket == len(_HISTOGRAM_EDGES) - 1 else f"{low}-{_HISTOGRAM_EDGES[bucket + 1] - 1}"
        rows.append((label, buckets[bucket]))
    return rows


def format_report(stats: PrepareStats, manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]
    lines = [
        f"doppel prepare — {', '.join(manifest['source']['files'][i]['name'] for i in range(len(stats.files)))}",
        f"owner: {manifest['owner']['name']} ({manifest['owner']['id']})",
        "",
        f"messages read     {stats.messages_read:>10,} (+{stats.messages_in_skipped_chats:,} in skipped chats)",
        f"messages kept     {stats.kept_messages:>10,}",
    ]
    for reason, count in counts["messages_dropped"].items():
        lines.append(f"  dropped: {reason:<28} {count:>8,}")
    for kind, count in sorted(stats.scrubbed.items()):
        lines.append(f"  scrubbed: <{kind}>{'':<{22 - len(kind)}} {count:>8,}")
    lines += [
        f"chats             {stats.chats_read:>10,} read, {stats.chats_used:,} used",
    ]
    for reason, count in sorted(stats.chats_skipped.items(), key=lambda item: -item[1]):
        lines.append(f"  skipped: {reason:<28} {count:>8,}")
    lines += [
        f"sessions          {stats.sessions_found:>10,} found, {stats.sessions_kept:,} kept",
    ]
    for reason, count in counts["sessions_dropped"].items():
        lines.append(f"  dropped: {reason:<28} {count:>8,}")
    lines += [
        f"turns             {stats.turns:>10,}",
        f"rows              {stats.windows:>10,} ({stats.train_rows:,} train, {stats.validation_rows:,} validation;"
        f" longest {counts['max_window_tokens']:,} tokens)",
        "",
        "top speakers (messages, turns in kept sessions):",
    ]
    for speaker in manifest["speakers"][:10]:
        marker = " (owner)" if speaker["is_owner"] else ""
        lines.append(f"  {speaker['name'][:32]:<32} {speaker['messages']:>8,} {speaker['turns']:>8,}{marker}")
    lines += ["", "session length (messages):"]
    histogram = session_length_histogram(stats.session_messages)
    widest = max((count for _, count in histogram), default=0) or 1
    for label, count in histogram:
        bar = "#" * round(_BAR_WIDTH * count / widest)
        lines.append(f"  {label:>7} {count:>8,} {bar}")
    lines.append(f"\ntook {stats.seconds:.1f} s")
    return "\n".join(lines)
