"""Sessions, turns and windows: the shape of a conversation that the model learns from.

- A chat's messages split into sessions where the gap between two messages is at least the session gap,
  measured in total seconds (so replies days apart never share a session).
- Consecutive messages of one speaker form a turn.
- A session is kept when it has two or more turns and the owner speaks after the first turn.
- A session too long for ``max_tokens`` is split into overlapping windows, each ending on a turn
  boundary; a single turn too long for a window is first split between its messages (and a single
  message too long, between words). Every message lands in at least one window: nothing is cut off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from doppel.chatml import Turn, render_turn

DEFAULT_SESSION_GAP = 30 * 60
DEFAULT_MAX_TOKENS = 1024


@dataclass(slots=True)
class RawSession:
    """A session as read: speakers by id (with the display name they had), not yet named or judged."""

    chat_index: int
    start: int
    end: int
    turns: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (speaker id, name, texts)
    messages: int = 0

    def later_speakers(self) -> set[str]:
        return {turn[0] for turn in self.turns[1:]}


class Sessionizer:
    """Feed one chat's messages in order with :meth:`add`; finished sessions come back one at a time."""

    def __init__(self, chat_index: int, gap_seconds: int) -> None:
        self.chat_index = chat_index
        self.gap_seconds = gap_seconds
        self.current: RawSession | None = None

    def add(self, date: int, speaker_id: str, name: str, text: str) -> RawSession | None:
        finished = None
        current = self.current
        if current is not None and date - current.end >= self.gap_seconds:
            finished, current = current, None
        if current is None:
            current = self.current = RawSession(self.chat_index, date, date)
        turns = current.turns
        if turns and turns[-1][0] == speaker_id:
            turns[-1][2].append(text)
        else:
            turns.append((speaker_id, name, [text]))
        current.end = max(current.end, date)
        current.messages += 1
        return finished

    def add_many(self, rows: Iterable[tuple[int, int, str, str, str]]) -> list[RawSession]:
        """:meth:`add` for a batch of ``(id, date, speaker id, name, text)`` rows; returns the finished sessions.

        The same rules as :meth:`add` in one loop with the session's state in locals: prepare feeds a
        million messages through here.
        """
        finished: list[RawSession] = []
        gap = self.gap_seconds
        current = self.current
        end = count = 0
        last_speaker: str | None = None
        last_texts: list[str] = []
        turns: list[tuple[str, str, list[str]]] = []
        if current is not None:
            end, count, turns = current.end, current.messages, current.turns
            last_speaker, _, last_texts = turns[-1]
        for _, date, speaker_id, name, text in rows:
            if current is None or date - end >= gap:
                if current is not None:
                    current.end, current.messages = end, count
                    finished.append(current)
                current = RawSession(self.chat_index, date, date)
                turns, end, count, last_speaker = current.turns, date, 0, None
            if speaker_id == last_speaker:
                last_texts.append(text)
            else:
                last_texts = [text]
                turns.append((speaker_id, name, last_texts))
                last_speaker = speaker_id
            if date > end:  # noqa: PLR1730 (a call to max() per message costs more)
                end = date
            count += 1
        if current is not None:
            current.end, current.messages = end, count
        self.current = current
        return finished

    def flush(self) -> RawSession | None:
        finished, self.current = self.current, None
        return finished


TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """A cheap, slightly generous token estimate: about 3.5 UTF-8 bytes per token across scripts."""
    return estimate_tokens_of_bytes(len(text.encode("utf-8")))


def estimate_tokens_of_bytes(size: int) -> int:
    """:func:`estimate_tokens` of a text that is ``size`` bytes long in UTF-8 (3.5 bytes a token, rounded up)."""
    return (size * 2 + 6) // 7


def split_long_turns(turns: Sequence[Turn], count: TokenCounter, max_tokens: int) -> list[Turn]:
    """Split every turn whose rendering exceeds ``max_tokens`` into consecutive turns of the same speaker."""
    result: list[Turn] = []
    for turn in turns:
        if count(render_turn(turn.speaker, turn.messages)) <= max_tokens:
            result.append(turn)
            continue
        pieces: list[str] = []
        for message in turn.messages:
            pieces.extend(_split_message(turn.speaker, message, count, max_tokens))
        group: list[str] = []
        for piece in pieces:
            if group and count(render_turn(turn.speaker, [*group, piece])) > max_tokens:
                result.append(Turn(turn.speaker, tuple(group)))
                group = []
            group.append(piece)
        result.append(Turn(turn.speaker, tuple(group)))
    return result


def _split_message(speaker: str, message: str, count: TokenCounter, max_tokens: int) -> list[str]:
    if count(render_turn(speaker, [message])) <= max_tokens:
        return [message]
    words = message.split(" ")
    pieces: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and count(render_turn(speaker, [candidate])) > max_tokens:
            pieces.append(current)
            candidate = word
        while count(render_turn(speaker, [candidate])) > max_tokens and len(candidate) > 1:
            # One "word" longer than a window (a pasted blob): cut it by characters.
            cut = max(1, len(candidate) // 2)
            while cut > 1 and count(render_turn(speaker, [candidate[:cut]])) > max_tokens:
                cut //= 2
            pieces.append(candidate[:cut])
            candidate = candidate[cut:]
        current = candidate
    if current:
        pieces.append(current)
    return pieces


def windows(costs: Sequence[int], max_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """Half-open turn ranges ``[start, end)`` covering every turn, each within ``max_tokens``.

    Each window starts with up to ``overlap_tokens`` worth of the previous window's last turns, so the
    model sees what was being answered. Assumes every single cost fits (see :func:`split_long_turns`).
    """
    if sum(costs) <= max_tokens:
        return [(0, len(costs))]
    ranges: list[tuple[int, int]] = []
    start = 0
    while True:
        end, total = start, 0
        while end < len(costs) and total + costs[end] <= max_tokens:
            total += costs[end]
            end += 1
        end = max(end, start + 1)
        ranges.append((start, end))
        if end >= len(costs):
            return ranges
        next_start, carried = end, 0
        while next_start - 1 > start and carried + costs[next_start - 1] <= overlap_tokens:
            next_start -= 1
            carried += costs[next_start]
        # The overlap plus the next turn must still fit, or we would make no progress.
        while next_start < end and carried + costs[end] > max_tokens:
            carried -= costs[next_start]
            next_start += 1
        start = next_start
