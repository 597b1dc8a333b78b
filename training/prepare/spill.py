"""Sessions on disk between the passes of ``doppel prepare``, and the small index pass 2 decides on.

Pass 1 writes every session it cuts to a scratch file as a length-prefixed msgpack frame (``SpilledSession``:
chat index, start, end, messages, turns with speakers still as ids) and keeps in memory only what pass 2
needs: when each session started and who speaks after its first turn. The serial read (:class:`SessionSpill`)
and the worker processes (``training.prepare.workers``) write and index sessions through these same functions.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from training.prepare.framed import frame, read_framed
from training.prepare.report import PrepareStats
from training.prepare.rows import SpilledSession
from training.prepare.sessions import RawSession
from training.prepare.speakers import SpeakerRegistry


def encode_session(encoder: msgspec.msgpack.Encoder, session: RawSession) -> bytes:
    """One session as a spill-file frame; read back as a :data:`SpilledSession`."""
    return frame(encoder.encode((session.chat_index, session.start, session.end, session.messages, session.turns)))


def later_speakers(turns: Sequence[Sequence[Any]]) -> frozenset[str]:
    """Who speaks after a session's first turn (empty for a single turn): all that the keep rule asks."""
    return frozenset(turn[0] for turn in turns[1:])


class SharedSets:
    """Equal speaker sets stored once: the sessions of one chat mostly share who speaks in them."""

    def __init__(self) -> None:
        self._sets: dict[frozenset[str], frozenset[str]] = {}

    def __call__(self, speakers: Iterable[str]) -> frozenset[str]:
        key = speakers if isinstance(speakers, frozenset) else frozenset(speakers)
        return self._sets.setdefault(key, key)


class SessionIndex:
    """What pass 2 needs of every spilled session, in spill order."""

    def __init__(self) -> None:
        self.starts: array[int] = array("q")
        self.later_speakers: list[frozenset[str]] = []


class SessionSpill(SessionIndex):
    """The serial read's sessions: on disk for pass 3, indexed in memory for pass 2."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._shared = SharedSets()
        self._handle: BinaryIO = path.open("wb")
        self._encoder = msgspec.msgpack.Encoder()

    def add(self, session: RawSession, stats: PrepareStats, registry: SpeakerRegistry) -> None:
        for speaker_id, name, texts in session.turns:
            registry.observe(speaker_id, name, session.end, session.chat_index, len(texts))
        stats.add_sessions(1, single_turn=int(len(session.turns) < 2))
        self._handle.write(encode_session(self._encoder, session))
        self.starts.append(session.start)
        self.later_speakers.append(self._shared(later_speakers(session.turns)))

    def finish_writing(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def read_raw(self) -> Iterator[SpilledSession]:
        """The sessions as stored: ``(chat index, start, end, messages, [(speaker id, name, texts)])``."""
        return read_framed(self.path, SpilledSession)
