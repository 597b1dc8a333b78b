"""Passes 1 and 3 of ``doppel prepare`` on several cores: worker processes share out the chats of one export.

Every worker walks the whole file (skipping a chat is cheap: msgspec validates it without building
anything), but decodes, cleans and sessionizes only the chats it claims. Claims go in file order through
one shared counter: the first worker to reach chat k takes it, so while one worker is busy with a big
chat the other takes the next ones. No plan is needed and the load balances itself.

Each worker spills its sessions to its own file, as the serial read does, and hands back one record per
chat it claimed: the chat's counts and a summary of each session. The parent merges the records in file
order, so every counter (and the order of its keys), the speaker registry and the order of the sessions
come out exactly as a serial read makes them.

Then the workers wait for pass 2's decisions (the owner, every speaker's name, the validation cutoff),
and each renders the rows of its own chats into chunks of Arrow buffers (``training.prepare.rows``),
again in parallel. The parent assembles the chunks in chat order into the dataset's files.
``tests/training/test_prepare.py`` pins that the datasets are byte-identical to a serial run's.

Workers are forked from the parent before pyarrow is imported (see ``training.prepare.pipeline``) and import
nothing heavy themselves: prepare's memory budget is for all its processes together, so the parent
imports pyarrow only once the first of them has exited.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import multiprocessing.connection
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from doppel.errors import InputError
from training.prepare.framed import frame, read_framed
from training.prepare.reader import ChatInfo, ExportReader, owner_id_of
from training.prepare.report import PrepareStats
from training.prepare.rows import ChatLike, RowChunk, RowPlan, RowTally, SpilledSession, render_rows
from training.prepare.sessions import RawSession, Sessionizer, TokenCounter
from training.prepare.spill import SessionIndex, SharedSets, encode_session, later_speakers
from training.telegram.messages import DELETED_ACCOUNT
from training.telegram.stream import ExportStream

if TYPE_CHECKING:
    from training.prepare.speakers import SpeakerRegistry

# An export smaller than this is read in-process: starting workers would cost more than it saves.
MIN_PARALLEL_BYTES = 16 << 20


class ChatSessions(msgspec.Struct, array_like=True, gc=False):
    """What pass 2 needs of one chat's sessions; their texts stay in the worker's spill file.

    ``observations`` are what the speaker registry is told, ``(speaker id, name, date, messages)``,
    compressed without changing the registry's result: a speaker's observation under the same name at
    the same or a later date is folded into their previous one in the chat (a Deleted Account only at
    the same date; see :meth:`training.prepare.speakers.SpeakerRegistry.observe`). Speakers are independent, so
    folding across other speakers' observations is exact too.
    """

    starts: list[int] = []
    later_index: list[int] = []  # per session: which of later_sets speaks after its first turn
    later_sets: list[list[str]] = []
    single_turn: int = 0
    observations: list[list[Any]] = []


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
    sessions: ChatSessions | None = None


class WorkerResult(msgspec.Struct):
    """What a worker says when it is done; its ChatRecords went to its records file as it went."""

    sha256: str = ""
    owner_ids: list[str] = []
    error: tuple[int, str] | None = None  # (byte position, one-line message) of an InputError


class ParallelRead(SessionIndex):
    """The merged result of all workers' pass 1: the same index as the serial read's spill, and the file's hash."""

    def __init__(self, sha256: str) -> None:
        super().__init__()
        self.sha256 = sha256


@dataclass(frozen=True)
class _WorkerJob:
    """What a worker process is handed when it is forked."""

    worker: int
    reader: ExportReader
    path: Path
    session_gap: int
    count_tokens: TokenCounter | None
    scratch: Path


class ParallelPrepare:
    """Passes 1 and 3 of one export in ``workers`` forked processes; use as a context manager.

    ``read`` runs pass 1 and merges its records; ``render`` hands the workers pass 2's decisions and
    waits for them to render their rows; ``collect`` streams the chunks in chat order.
    """

    def __init__(
        self,
        reader: ExportReader,
        path: Path,
        workers: int,
        scratch: Path,
        session_gap: int,
        count_tokens: TokenCounter | None,
    ) -> None:
        self._ids = range(workers)
        self.scratch = scratch
        context = multiprocessing.get_context("fork")  # the workers inherit the reader, its filters and scrubber
        self._claimed = context.Value("q", 0)
        self._positions = context.Array("q", workers)  # how far each worker has read, in bytes
        self._messages = context.Array("q", workers)  # and how many messages of its own chats it has read
        self._read_done = [context.Event() for _ in range(workers)]
        self._go = context.Event()  # pass 2 is decided (or the run is over: then there is no plan file)
        self._processes = [
            context.Process(
                target=_worker,
                args=(
                    _WorkerJob(worker, reader, path, session_gap, count_tokens, scratch),
                    self._claimed,
                    (self._positions, self._messages),
                    self._read_done[worker],
                    self._go,
                ),
                name=f"doppel-prepare-{worker}",
                daemon=True,
            )
            for worker in range(workers)
        ]
        self._reader = reader

    def __enter__(self) -> ParallelPrepare:
        gc.freeze()  # objects made so far are never collected in the children: their pages stay shared
        try:
            for process in self._processes:
                process.start()
        finally:
            gc.unfreeze()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        self._go.set()  # a worker still waiting finds no plan and exits
        for process in self._processes:
            if exc_type is None:
                process.join(5)
            if process.is_alive():  # the run failed or was interrupted: nothing a worker does now is needed
                process.kill()
            process.join()

    def read(
        self, owner_ids: set[str], registry: SpeakerRegistry, progress: Callable[[int, int], None]
    ) -> ParallelRead:
        """Pass 1: fills the reader's stats and chats, ``owner_ids`` and ``registry``.

        ``progress(bytes, messages)`` hears how far the furthest worker is, and how many messages all read.
        """
        while not all(
            done.is_set() or not process.is_alive()
            for done, process in zip(self._read_done, self._processes, strict=True)
        ):
            time.sleep(0.005)  # the workers' end is noticed within 5 ms; the waits cost nothing measurable
            progress(max(self._positions[:]), sum(self._messages[:]))
        progress(max(self._positions[:]), sum(self._messages[:]))
        results = [self._result(worker, "result", WorkerResult) for worker in self._ids]
        errors = [result.error for result in results if result.error is not None]
        if errors:
            # Each worker stops at the first error it meets; the first in the file is what a serial read reports.
            raise InputError(min(errors)[1])
        merged = ParallelRead(sha256=results[0].sha256)
        for result in results:
            owner_ids.update(result.owner_ids)
        # Each worker's records are in file order: merging the streams by position walks the file's order, one
        # chat's record in memory at a time.
        records = heapq.merge(
            *(read_framed(_worker_file(self.scratch, worker, "chats"), ChatRecord) for worker in self._ids),
            key=lambda record: record.position,
        )
        _merge(self._reader, records, merged, registry)
        return merged

    def render(self, plan: RowPlan, meanwhile: Callable[[], None]) -> None:
        """Pass 3 in the workers: each renders its chats' rows with ``plan``; returns when all are done.

        ``meanwhile`` runs here as soon as the first worker has exited, while the others finish.
        """
        _plan_path(self.scratch).write_bytes(msgspec.msgpack.encode(plan))
        self._go.set()
        multiprocessing.connection.wait([process.sentinel for process in self._processes])
        meanwhile()
        for process in self._processes:
            process.join()

    def collect(self, emit: Callable[[RowChunk], None]) -> RowTally:
        """Every chunk the workers rendered, to ``emit`` in chat order; their counts, added up."""
        tallies = [self._result(worker, "tally", RowTally) for worker in self._ids]
        for chunk in heapq.merge(
            *(read_framed(_worker_file(self.scratch, worker, "rows"), RowChunk) for worker in self._ids),
            key=lambda chunk: chunk.chat_index,
        ):
            emit(chunk)
        total = RowTally()
        for tally in tallies:
            total.add(tally)
        return total

    def _result(self, worker: int, name: str, kind: type[Any]) -> Any:
        """A worker's file ``name``, decoded as ``kind``; a crash or a death is raised as the bug it is."""
        path = _worker_file(self.scratch, worker, name)
        crash = _worker_file(self.scratch, worker, "crash")
        if crash.exists():
            raise RuntimeError(f"a prepare worker failed:\n{crash.read_text(encoding='utf-8')}")
        if not path.exists():
            raise RuntimeError(f"prepare worker {worker} died (exit code {self._processes[worker].exitcode})")
        return msgspec.msgpack.decode(path.read_bytes(), type=kind)


def _merge(
    reader: ExportReader, records: Iterable[ChatRecord], merged: ParallelRead, registry: SpeakerRegistry
) -> None:
    """Fold the chats' records into the reader's stats, the registry and the session index, in file order."""
    stats = reader.stats
    shared = SharedSets()
    observe = registry.observe
    starts, later = merged.starts, merged.later_speakers
    single_turn = 0
    for record in records:
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
        chat_index, sessions = record.chat_index, record.sessions
        if sessions is None:
            continue
        for speaker_id, name, date, messages in sessions.observations:
            observe(speaker_id, name, date, chat_index, messages)
        single_turn += sessions.single_turn
        starts.extend(sessions.starts)
        later_sets = list(map(shared, sessions.later_sets))
        later.extend(map(later_sets.__getitem__, sessions.later_index))
    stats.add_sessions(len(starts), single_turn)


def _worker_file(scratch: Path, worker: int, kind: str) -> Path:
    """One of a worker's files: sessions, chats (records), result, rows (chunks), tally or crash."""
    return scratch / f"worker-{worker}.{kind}"


def _plan_path(scratch: Path) -> Path:
    return scratch / "plan.msgpack"


def _worker(job: _WorkerJob, claimed: Any, progress: tuple[Any, Any], read_done: Any, go: Any) -> None:
    """A worker process: pass 1 on the chats it claims, then, once pass 2 is decided, pass 3 on them."""
    gc.freeze()  # the parent's objects: never traversed here, so their pages are not copied
    parent = os.getppid()
    worker, scratch = job.worker, job.scratch
    try:
        export = ExportStream(job.path, hash_bytes=worker == 0)  # one hash of the file is enough
        chats: dict[int, ChatLike] = {}
        try:
            result = _read_share(job, export, claimed, progress, chats)
        except InputError as error:
            result = WorkerResult(error=(export.position, str(error)))
        _worker_file(scratch, worker, "result").write_bytes(msgspec.msgpack.encode(result))
        read_done.set()
        if result.error is not None:
            return
        while not go.wait(1.0):
            if os.getppid() != parent:  # the parent is gone: nobody will ever decide
                return
        if not _plan_path(scratch).exists():  # the run ended without a pass 3
            return
        plan = msgspec.msgpack.decode(_plan_path(scratch).read_bytes(), type=RowPlan)
        encoder = msgspec.msgpack.Encoder()
        with _worker_file(scratch, worker, "rows").open("wb") as out:

            def emit(chunk: RowChunk) -> None:
                out.write(frame(encoder.encode(chunk)))

            sessions = read_framed(_worker_file(scratch, worker, "sessions"), SpilledSession)
            tally = render_rows(sessions, chats, plan, job.count_tokens, emit)
        _worker_file(scratch, worker, "tally").write_bytes(msgspec.msgpack.encode(tally))
    except BaseException:  # reported to the parent, which raises it
        _worker_file(scratch, worker, "crash").write_text(traceback.format_exc(), encoding="utf-8")


def _read_share(
    job: _WorkerJob, export: ExportStream, claimed: Any, progress: tuple[Any, Any], chats: dict[int, ChatLike]
) -> WorkerResult:
    worker, reader, session_gap, scratch = job.worker, job.reader, job.session_gap, job.scratch
    result = WorkerResult()
    encoder = msgspec.msgpack.Encoder()
    scrubber = reader.scrubber
    positions, message_counts = progress
    selected = 0
    messages_seen = 0  # in the chats this worker claimed
    last_report = 0.0
    with (
        export,
        _worker_file(scratch, worker, "sessions").open("wb") as spill,
        _worker_file(scratch, worker, "chats").open("wb") as out,
    ):

        def emit(record: ChatRecord) -> None:
            out.write(frame(encoder.encode(record)))

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
                skipped = chat.skip()
                messages_seen += skipped
                emit(ChatRecord(position, -1, None, skipped_reason=reason, skipped_messages=skipped))
            else:
                chats[chat_index] = info
                # Fresh counters per chat: the parent adds them up in file order, which keeps the order of
                # their keys (the report lists ties in order of first appearance).
                reader.stats = stats = PrepareStats()
                if scrubber is not None:
                    scrubber.counts = Counter()
                summary = _ChatSummarizer()
                sessionizer = Sessionizer(chat_index, session_gap)
                for batch in chat.batches():
                    for session in sessionizer.add_many(reader.clean(batch)):
                        _spill(session, spill, encoder, summary)
                    messages_seen += len(batch)
                    now = time.monotonic()
                    if now - last_report > 0.05:
                        positions[worker], message_counts[worker] = export.position, messages_seen
                        last_report = now
                last = sessionizer.flush()
                if last is not None:
                    _spill(last, spill, encoder, summary)
                emit(
                    ChatRecord(
                        position,
                        chat_index,
                        (info.id, info.name, info.type),
                        messages_read=stats.messages_read,
                        kept_messages=stats.kept_messages,
                        dropped=dict(stats.dropped),
                        scrubbed=dict(scrubber.counts) if scrubber is not None else {},
                        sessions=summary.sessions,
                    )
                )
            positions[worker], message_counts[worker] = export.position, messages_seen
        positions[worker] = export.position  # the end of the file, past the last chat
        owner = owner_id_of(export.personal_information)
        if owner is not None:
            result.owner_ids.append(owner)
    if worker == 0:
        result.sha256 = export.sha256.hexdigest()
    return result


def _spill(session: RawSession, spill: Any, encoder: msgspec.msgpack.Encoder, summary: _ChatSummarizer) -> None:
    """Write one session to the spill file and add it to its chat's summary."""
    spill.write(encode_session(encoder, session))
    summary.add(session)


class _ChatSummarizer:
    """Builds one chat's :class:`ChatSessions` as its sessions are spilled."""

    def __init__(self) -> None:
        self.sessions = ChatSessions()
        self._last: dict[str, list[Any]] = {}  # per speaker: their latest observation in this chat
        self._later_ids: dict[frozenset[str], int] = {}

    def add(self, session: RawSession) -> None:
        sessions, last = self.sessions, self._last
        turns = session.turns
        date = session.end  # every turn of a session is observed at its end, as the serial read does
        for speaker_id, name, texts in turns:
            entry = last.get(speaker_id)
            if (
                entry is not None
                and entry[1] == name
                and date >= entry[2]
                and (name != DELETED_ACCOUNT or date == entry[2])
            ):
                entry[2] = date
                entry[3] += len(texts)
            else:
                last[speaker_id] = entry = [speaker_id, name, date, len(texts)]
                sessions.observations.append(entry)
        sessions.starts.append(session.start)
        if len(turns) < 2:
            sessions.single_turn += 1
        later = later_speakers(turns)
        index = self._later_ids.get(later)
        if index is None:
            index = self._later_ids[later] = len(sessions.later_sets)
            sessions.later_sets.append(sorted(later))
        sessions.later_index.append(index)
