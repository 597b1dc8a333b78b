"""Pass 1 of ``doppel prepare`` on several cores: worker processes share out the chats of one export.

Every worker walks the whole file (skipping a chat is cheap: msgspec validates it without building
anything), but decodes, cleans and sessionizes only the chats it claims. Claims go in file order through
one shared counter: the first worker to reach chat k takes it, so while one worker is busy with a big
chat the other takes the next ones. No plan is needed and the load balances itself.

Each worker spills its sessions to its own file, as the serial read does, and hands back one record per
chat it claimed: the chat's counts and a summary of each session. The parent merges the records in file
order, so every counter (and the order of its keys), the speaker registry and the order of the sessions
come out exactly as a serial read makes them; ``tests/training/test_prepare.py`` pins that the datasets
are byte-identical.

Workers are forked from the parent before pyarrow is imported (see ``training.prepare``) and import
nothing heavy themselves: prepare's memory budget is for all its processes together.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import struct
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from training.errors import InputError
from training.export_stream import ExportStream
from training.report import PrepareStats
from training.sessions import Sessionizer

if TYPE_CHECKING:
    from training.prepare import SpilledSession, _Reader
    from training.speakers import SpeakerRegistry

_LENGTH = struct.Struct("<I")
# An export smaller than this is read in-process: starting workers would cost more than it saves.
MIN_PARALLEL_BYTES = 16 << 20


class SessionSummary(msgspec.Struct, array_like=True, gc=False):
    """What pass 2 needs of one session; the texts stay in the worker's spill file."""

    start: int
    end: int
    turns: int
    later_speakers: list[str]  # who speaks after the first turn
    # (speaker id, name, messages) in turn order, a speaker's consecutive turns under one name summed:
    # all turns of a session are observed at its end date, so that gives the registry the same result.
    observations: list[tuple[str, str, int]]


class ChatRecord(msgspec.Struct, array_like=True):
    """One chat as the worker that claimed it saw it."""

    position: int  # the chat's place in the file
    chat_index: int  # its place among the selected chats, -1 when skipped
    info: tuple[int, str | None, str] | None  # ChatInfo's fields when selected
    skipped_reason: str = ""
    skipped_messages: int = 0
    messages_read: int = 0
    kept_messages: int = 0
    dropped: dict[str, int] = {}
    scrubbed: dict[str, int] = {}
    sessions: list[SessionSummary] = []


class WorkerResult(msgspec.Struct):
    """What a worker says when it is done; its ChatRecords went to its records file as it went."""

    sha256: str = ""
    owner_ids: list[str] = []
    error: tuple[int, str] | None = None  # (byte position, one-line message) of an InputError
    crash: str | None = None  # a traceback: a bug, not bad input


@dataclass
class ParallelRead:
    """The merged result of all workers, shaped like the serial read's."""

    spills: list[Path]
    owners: list[int] = field(default_factory=list)  # per chat index: the worker whose spill holds it
    session_counts: list[int] = field(default_factory=list)  # per chat index
    starts: array[int] = field(default_factory=lambda: array("q"))
    later_speakers: list[frozenset[str]] = field(default_factory=list)
    sha256: str = ""

    def read_raw(self) -> Iterator[SpilledSession]:
        """Every session, in the order a serial read spills them (chat by chat, in file order)."""
        streams = [read_spill(path) for path in self.spills]
        for owner, count in zip(self.owners, self.session_counts, strict=True):
            stream = streams[owner]
            for _ in range(count):
                yield next(stream)


def read_spill(path: Path) -> Iterator[SpilledSession]:
    """The sessions of a spill file: length-prefixed msgpack tuples (see ``training.prepare._SessionSpill``)."""
    from training.prepare import SpilledSession  # here, not at the top: a type alias; the import is circular

    decoder = msgspec.msgpack.Decoder(SpilledSession)
    with path.open("rb") as handle:
        while header := handle.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            yield decoder.decode(handle.read(length))


def read_in_parallel(
    reader: _Reader,
    path: Path,
    workers: int,
    scratch: Path,
    session_gap: int,
    owner_ids: set[str],
    registry: SpeakerRegistry,
    progress: Callable[[int], None],
) -> ParallelRead:
    """Pass 1 of one export with ``workers`` processes; fills ``reader``'s stats and chats, and ``registry``."""
    context = multiprocessing.get_context("fork")  # the workers inherit the reader, its filters and scrubber
    claimed = context.Value("q", 0)
    positions = context.Array("q", workers)
    processes = [
        context.Process(
            target=_worker,
            args=(worker, reader, path, session_gap, claimed, positions, scratch),
            name=f"doppel-prepare-{worker}",
            daemon=True,
        )
        for worker in range(workers)
    ]
    gc.freeze()  # objects made so far are never collected in the children: their pages stay shared
    try:
        for process in processes:
            process.start()
    finally:
        gc.unfreeze()
    try:
        while any(process.is_alive() for process in processes):
            processes[0].join(0.1)
            progress(max(positions[:]))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
    results = []
    for worker, process in enumerate(processes):
        result_path = _result_path(scratch, worker)
        if not result_path.exists():
            raise RuntimeError(f"prepare worker {worker} died (exit code {process.exitcode})")
        results.append(msgspec.msgpack.decode(result_path.read_bytes(), type=WorkerResult))
    for result in results:
        if result.crash is not None:
            raise RuntimeError(f"a prepare worker failed:\n{result.crash}")
    errors = [result.error for result in results if result.error is not None]
    if errors:
        # Each worker stops at the first error it meets; the first in the file is what a serial read reports.
        raise InputError(min(errors)[1])
    merged = ParallelRead(spills=[_spill_path(scratch, worker) for worker in range(workers)], sha256=results[0].sha256)
    for result in results:
        owner_ids.update(result.owner_ids)
    # Each worker's records are in file order: merging the streams by position walks the file's order, one
    # chat's record in memory at a time.
    records = heapq.merge(
        *(_read_records(_records_path(scratch, worker), worker) for worker in range(workers)),
        key=lambda item: item[0].position,
    )
    _merge(reader, records, merged, registry)
    return merged


def _read_records(path: Path, worker: int) -> Iterator[tuple[ChatRecord, int]]:
    decoder = msgspec.msgpack.Decoder(ChatRecord)
    with path.open("rb") as handle:
        while header := handle.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            yield decoder.decode(handle.read(length)), worker


def _merge(
    reader: _Reader, records: Iterable[tuple[ChatRecord, int]], merged: ParallelRead, registry: SpeakerRegistry
) -> None:
    """Fold the chats' records into the reader's stats, the registry and the session index, in file order."""
    from training.prepare import ChatInfo  # here, not at the top: circular

    stats = reader.stats
    shared: dict[frozenset[str], frozenset[str]] = {}
    observe = registry.observe
    starts, later_speakers = merged.starts, merged.later_speakers
    single_turn = 0
    for record, worker in records:
        stats.chats_read += 1
        if record.info is None:
            stats.chats_skipped[record.skipped_reason] += 1
            stats.messages_in_skipped_chats += record.skipped_messages
            continue
        stats.chats_used += 1
        if record.chat_index != len(reader.chats):
            raise RuntimeError(f"prepare workers disagree on chat {record.position}: a bug")
        reader.chats.append(ChatInfo(*record.info))
        stats.messages_read += record.messages_read
        stats.kept_messages += record.kept_messages
        stats.dropped.update(record.dropped)
        stats.scrubbed.update(record.scrubbed)
        merged.owners.append(worker)
        merged.session_counts.append(len(record.sessions))
        chat_index = record.chat_index
        for session in record.sessions:
            for speaker_id, name, messages in session.observations:
                observe(speaker_id, name, session.end, chat_index, messages)
            if session.turns < 2:
                single_turn += 1
            later = frozenset(session.later_speakers)
            starts.append(session.start)
            later_speakers.append(shared.setdefault(later, later))
    stats.sessions_found += len(starts)
    if single_turn:
        stats.sessions_dropped["a single turn"] += single_turn


def _spill_path(scratch: Path, worker: int) -> Path:
    return scratch / f"sessions-{worker}.bin"


def _records_path(scratch: Path, worker: int) -> Path:
    return scratch / f"chats-{worker}.bin"


def _result_path(scratch: Path, worker: int) -> Path:
    return scratch / f"worker-{worker}.result"


def _worker(
    worker: int, reader: _Reader, path: Path, session_gap: int, claimed: Any, positions: Any, scratch: Path
) -> None:
    """A worker process: read the chats it claims, write its spill file and its result file."""
    gc.freeze()  # the parent's objects: never traversed here, so their pages are not copied
    export = ExportStream(path, hash_bytes=worker == 0)  # one hash of the file is enough
    try:
        result = _read_share(worker, reader, export, session_gap, claimed, positions, scratch)
    except InputError as error:
        result = WorkerResult(error=(export.position if export._buffer is not None else 0, str(error)))
    except BaseException:  # reported to the parent, which raises it
        result = WorkerResult(crash=traceback.format_exc())
    _result_path(scratch, worker).write_bytes(msgspec.msgpack.encode(result))


def _read_share(
    worker: int,
    reader: _Reader,
    export: ExportStream,
    session_gap: int,
    claimed: Any,
    positions: Any,
    scratch: Path,
) -> WorkerResult:
    result = WorkerResult()
    encoder = msgspec.msgpack.Encoder()
    pack = _LENGTH.pack
    scrubber = reader.scrubber
    selected = 0
    last_report = 0.0
    with export, _spill_path(scratch, worker).open("wb") as spill, _records_path(scratch, worker).open("wb") as out:

        def emit(record: ChatRecord) -> None:
            payload = encoder.encode(record)
            out.write(pack(len(payload)) + payload)

        for position, chat in enumerate(export.chats()):
            with claimed.get_lock():
                mine = claimed.value == position
                if mine:
                    claimed.value = position + 1
            info, reason = reader.decide(chat.header)
            chat_index = -1
            if info is not None:
                chat_index, selected = selected, selected + 1
            if not mine:
                chat.skip()
            elif info is None:
                emit(ChatRecord(position, -1, None, skipped_reason=reason, skipped_messages=chat.skip()))
            else:
                # Fresh counters per chat: the parent adds them up in file order, which keeps the order of
                # their keys (the report lists ties in order of first appearance).
                reader.stats = stats = PrepareStats()
                if scrubber is not None:
                    scrubber.counts = Counter()
                summaries: list[SessionSummary] = []
                sessionizer = Sessionizer(chat_index, session_gap)
                for batch in chat.batches():
                    for session in sessionizer.add_many(reader._clean(batch)):
                        _spill(session, spill, encoder, pack, summaries)
                    now = time.monotonic()
                    if now - last_report > 0.05:
                        positions[worker] = export.position
                        last_report = now
                last = sessionizer.flush()
                if last is not None:
                    _spill(last, spill, encoder, pack, summaries)
                emit(
                    ChatRecord(
                        position,
                        chat_index,
                        (info.id, info.name, info.type),
                        messages_read=stats.messages_read,
                        kept_messages=stats.kept_messages,
                        dropped=dict(stats.dropped),
                        scrubbed=dict(scrubber.counts) if scrubber is not None else {},
                        sessions=summaries,
                    )
                )
            positions[worker] = export.position
        personal = export.personal_information
        if personal is not None and isinstance(personal.get("user_id"), int | str) and str(personal["user_id"]).strip():
            result.owner_ids.append(f"user{personal['user_id']}")
    if worker == 0:
        result.sha256 = export.sha256.hexdigest()
    return result


def _spill(session: Any, spill: Any, encoder: msgspec.msgpack.Encoder, pack: Any, summaries: list) -> None:
    turns = session.turns
    payload = encoder.encode((session.chat_index, session.start, session.end, session.messages, turns))
    spill.write(pack(len(payload)) + payload)
    observations: list[list[Any]] = []
    latest: dict[str, list[Any]] = {}
    for speaker_id, name, texts in turns:
        seen = latest.get(speaker_id)
        if seen is not None and seen[1] == name:
            seen[2] += len(texts)
        else:
            latest[speaker_id] = entry = [speaker_id, name, len(texts)]
            observations.append(entry)
    later = list({turn[0] for turn in turns[1:]}) if len(turns) > 1 else []
    summaries.append(
        SessionSummary(session.start, session.end, len(turns), later, [tuple(entry) for entry in observations])  # type: ignore[misc]
    )
