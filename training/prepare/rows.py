"""Pass 3 of ``doppel prepare`` without pyarrow: kept sessions rendered into chunks of dataset rows.

    tally = render_rows(sessions, chats, plan, count_tokens=None, emit=writers_by_split)

A :class:`RowChunk` holds up to ``ROWS_PER_CHUNK`` rows of one chat and one split as raw Arrow buffers
(UTF-8 data with int32 offsets, native-endian integers), so the process that writes the dataset turns
it into an Arrow batch without touching a single row (``training.prepare.writer``). That is what lets
prepare's worker processes, which must not import pyarrow (see ``training.prepare.workers``), do this
work in parallel, and the serial path runs the very same function, so both write the same bytes.

Chunk boundaries depend only on a chat's own rows (never on which process rendered it), and the
writer groups chunks into batches by row count in chat order, so the files are identical whatever the
number of workers.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import accumulate
from typing import Protocol

import msgspec

from doppel.chatml import Turn, encoded_turn_header, render_encoded_turn, render_turn
from training.prepare.sessions import (
    TokenCounter,
    estimate_tokens,
    estimate_tokens_of_bytes,
    split_long_turns,
    windows,
)

# A session as spilled between the passes: chat index, start, end, messages, [(speaker id, name, texts)].
SpilledSession = tuple[int, int, int, int, list[tuple[str, str, list[str]]]]
ROWS_PER_CHUNK = 256
# A chunk also closes at this much ChatML text, so int32 offsets never overflow whatever --max-tokens is.
CHUNK_TEXT_BYTES = 8 << 20
TRAIN, VALIDATION = 0, 1


class ChatLike(Protocol):
    id: int
    type: str


class RowPlan(msgspec.Struct, frozen=True):
    """Everything pass 2 decided that pass 3 needs; small enough to hand to every worker."""

    names: dict[str, str]  # speaker id -> the one ChatML role name
    owner_id: str
    cutoff: int | None  # sessions starting at or after this go to validation
    max_tokens: int
    overlap_tokens: int


class RowChunk(msgspec.Struct, array_like=True, gc=False):
    """Consecutive rows of one chat in one split, column by column, as Arrow buffers."""

    chat_index: int
    split: int  # TRAIN or VALIDATION
    rows: int
    chat_id: int
    chat_type: str
    session_id_offsets: bytes
    session_id_data: bytes
    starts: bytes  # int64
    ends: bytes  # int64
    windows: bytes  # int32
    n_tokens: bytes  # int32
    turn_offsets: bytes  # int32, rows + 1: where each row's turns start among the chunk's turns
    speaker_offsets: bytes
    speaker_data: bytes
    turn_message_offsets: bytes  # int32, turns + 1: where each turn's messages start among the messages
    message_offsets: bytes
    message_data: bytes
    text_offsets: bytes
    text_data: bytes


class RowTally(msgspec.Struct):
    """Pass 3's counts; workers each return one and the parent adds them up (order never matters)."""

    rows: list[int] = msgspec.field(default_factory=lambda: [0, 0])  # per split
    windows: int = 0
    sessions_kept: int = 0
    turns: int = 0
    window_tokens: list[int] = msgspec.field(default_factory=list)
    session_messages: list[int] = msgspec.field(default_factory=list)
    turn_counts: dict[str, int] = msgspec.field(default_factory=dict)
    message_counts: dict[str, int] = msgspec.field(default_factory=dict)

    def add(self, other: RowTally) -> None:
        self.rows = [mine + theirs for mine, theirs in zip(self.rows, other.rows, strict=True)]
        self.windows += other.windows
        self.sessions_kept += other.sessions_kept
        self.turns += other.turns
        self.window_tokens.extend(other.window_tokens)
        self.session_messages.extend(other.session_messages)
        for mine, theirs in ((self.turn_counts, other.turn_counts), (self.message_counts, other.message_counts)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value


class _ChunkBuilder:
    """Rows of one chat and one split, gathered as columns until :meth:`take` packs them."""

    def __init__(self, chat_index: int, split: int, chat: ChatLike) -> None:
        self.chat_index, self.split, self.chat_id, self.chat_type = chat_index, split, chat.id, chat.type
        self._clear()

    def _clear(self) -> None:
        self.rows = 0
        self.text_bytes = 0
        self.session_ids: list[bytes] = []
        self.starts = array("q")
        self.ends = array("q")
        self.windows = array("i")
        self.n_tokens = array("i")
        self.turns_per_row: list[int] = []
        self.speakers: list[bytes] = []
        self.messages_per_turn: list[int] = []
        self.messages: list[bytes] = []
        self.texts: list[bytes] = []

    def add(
        self,
        start: int,
        end: int,
        window: int,
        speakers: Sequence[bytes],
        bodies: Iterable[Sequence[bytes]],
        text: bytes,
        tokens: int,
    ) -> bool:
        """One row; True when the chunk is full."""
        self.session_ids.append(f"{self.chat_id}:{start}#{window}".encode())
        self.starts.append(start)
        self.ends.append(end)
        self.windows.append(window)
        self.n_tokens.append(tokens)
        self.turns_per_row.append(len(speakers))
        self.speakers.extend(speakers)
        for messages in bodies:
            self.messages_per_turn.append(len(messages))
            self.messages.extend(messages)
        self.texts.append(text)
        self.rows += 1
        self.text_bytes += len(text)
        return self.rows >= ROWS_PER_CHUNK or self.text_bytes >= CHUNK_TEXT_BYTES

    def take(self) -> RowChunk | None:
        """The rows so far as one chunk (None when there are none); the builder starts over."""
        if not self.rows:
            return None
        chunk = RowChunk(
            self.chat_index,
            self.split,
            self.rows,
            self.chat_id,
            self.chat_type,
            *_string_buffers(self.session_ids),
            self.starts.tobytes(),
            self.ends.tobytes(),
            self.windows.tobytes(),
            self.n_tokens.tobytes(),
            _offsets(self.turns_per_row),
            *_string_buffers(self.speakers),
            _offsets(self.messages_per_turn),
            *_string_buffers(self.messages),
            *_string_buffers(self.texts),
        )
        self._clear()
        return chunk


def _offsets(lengths: list[int]) -> bytes:
    return array("i", accumulate(lengths, initial=0)).tobytes()


def _string_buffers(items: list[bytes]) -> tuple[bytes, bytes]:
    """An Arrow string column's offsets and data."""
    return _offsets(list(map(len, items))), b"".join(items)


def render_rows(
    sessions: Iterable[SpilledSession],
    chats: Mapping[int, ChatLike] | Sequence[ChatLike],
    plan: RowPlan,
    count_tokens: TokenCounter | None,
    emit: Callable[[RowChunk], None],
) -> RowTally:
    """Render every kept session (windowed when long) into chunks, in order; ``emit`` gets each chunk.

    ``count_tokens=None`` uses :func:`training.prepare.sessions.estimate_tokens`, computed here from byte lengths
    without decoding anything; with a tokenizer every turn is rendered as text and counted by it.
    Sessions must come chat by chat (all of one chat together), as the spill files hold them.
    """
    tally = RowTally()
    owner = plan.owner_id
    max_tokens, overlap = plan.max_tokens, plan.overlap_tokens
    names_bytes = {speaker_id: name.encode() for speaker_id, name in plan.names.items()}
    headers = {speaker_id: encoded_turn_header(name) for speaker_id, name in names_bytes.items()}
    turn_counts, message_counts = tally.turn_counts, tally.message_counts
    window_tokens, session_messages = tally.window_tokens, tally.session_messages
    split_rows = tally.rows
    builders: list[_ChunkBuilder] = []
    current_chat = -1
    turns_total = sessions_kept = 0
    for chat_index, start, end, messages, turns in sessions:
        if chat_index != current_chat:
            _flush(builders, emit)
            current_chat = chat_index
            chat = chats[chat_index]
            builders = [_ChunkBuilder(chat_index, TRAIN, chat), _ChunkBuilder(chat_index, VALIDATION, chat)]
        # The keep rule: two or more turns, and the owner speaks after the first.
        if not any(turn[0] == owner for turn in turns[1:]):
            continue
        split = VALIDATION if plan.cutoff is not None and start >= plan.cutoff else TRAIN
        builder = builders[split]
        speakers: list[bytes] = []
        bodies: list[list[bytes]] = []
        pieces: list[bytes] = []
        total = 0
        for speaker_id, _, texts in turns:
            encoded = [text.encode() for text in texts]
            speakers.append(names_bytes[speaker_id])
            bodies.append(encoded)
            piece = render_encoded_turn(headers[speaker_id], encoded)
            pieces.append(piece)
            total += estimate_tokens_of_bytes(len(piece))
            turn_counts[speaker_id] = turn_counts.get(speaker_id, 0) + 1
            message_counts[speaker_id] = message_counts.get(speaker_id, 0) + len(texts)
        if count_tokens is None and total <= max_tokens:  # the common case: the whole session is one row
            if builder.add(start, end, 0, speakers, bodies, b"".join(pieces), total):
                emit(builder.take())  # type: ignore[arg-type]
            window_tokens.append(total)
            split_rows[split] += 1
        else:
            for window, (names, texts, rendered, tokens) in enumerate(
                _windows([(plan.names[turn[0]], turn[2]) for turn in turns], count_tokens, max_tokens, overlap)
            ):
                full = builder.add(
                    start,
                    end,
                    window,
                    [name.encode() for name in names],
                    [[text.encode() for text in body] for body in texts],
                    rendered.encode(),
                    tokens,
                )
                if full:
                    emit(builder.take())  # type: ignore[arg-type]
                window_tokens.append(tokens)
                split_rows[split] += 1
        sessions_kept += 1
        turns_total += len(turns)
        session_messages.append(messages)
    _flush(builders, emit)
    tally.windows, tally.sessions_kept, tally.turns = sum(split_rows), sessions_kept, turns_total
    return tally


def _flush(builders: list[_ChunkBuilder], emit: Callable[[RowChunk], None]) -> None:
    for builder in builders:
        chunk = builder.take()
        if chunk is not None:
            emit(chunk)


def _windows(
    turns: list[tuple[str, Sequence[str]]], count_tokens: TokenCounter | None, max_tokens: int, overlap: int
) -> Iterable[tuple[list[str], list[Sequence[str]], str, int]]:
    """A session as rows through the text renderer: ``(speakers, bodies, ChatML text, tokens)`` per window.

    For sessions longer than a window (split on turn boundaries, over-long turns split first) and for
    token counts from a real tokenizer.
    """
    count = count_tokens or estimate_tokens
    speakers = [speaker for speaker, _ in turns]
    bodies: list[Sequence[str]] = [texts for _, texts in turns]
    rendered = [render_turn(speaker, texts) for speaker, texts in turns]
    costs = list(map(count, rendered))
    if max(costs) > max_tokens:
        split = split_long_turns([Turn(speaker, tuple(texts)) for speaker, texts in turns], count, max_tokens)
        speakers = [turn.speaker for turn in split]
        bodies = [turn.messages for turn in split]
        rendered = [render_turn(turn.speaker, turn.messages) for turn in split]
        costs = list(map(count, rendered))
    for first, stop in windows(costs, max_tokens, overlap):
        yield speakers[first:stop], bodies[first:stop], "".join(rendered[first:stop]), sum(costs[first:stop])
