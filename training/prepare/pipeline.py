"""``doppel prepare``: Telegram Desktop exports in, a ChatML training set out.

    doppel prepare result.json --out dataset/ [--me NAME_OR_ID] [--session-gap 30m] [--max-tokens 1024]

Three passes, each in flat memory:
1. read: stream every export (training.telegram.stream), normalise and filter messages, scrub them, and
   cut each chat into sessions, which are spilled to a scratch file with speakers still as ids.
   (Several exports are merged first through a scratch SQLite table, so a message seen twice counts once.)
2. decide: with all speakers seen, settle the owner and each speaker's one name (the latest), keep the
   sessions where the owner speaks after the first turn, and put the most recent share into validation.
3. write: render each kept session (windowed when long) with the shared ChatML rendering into chunks of
   rows (training.prepare.rows; in the workers when pass 1 had them), written as the train and
   validation splits, then the manifest and the report. The output directory appears atomically: a
   failed run leaves no half-written dataset behind.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import re
import resource
import shutil
import sqlite3
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from doppel import __version__
from doppel.chatml import neutralise
from doppel.errors import InputError
from doppel.system import usable_cpus
from training.prepare.framed import frame, read_framed
from training.prepare.progress import PrepareProgress
from training.prepare.report import PrepareStats, format_report
from training.prepare.rows import TRAIN, VALIDATION, RowChunk, RowPlan, SpilledSession, render_rows
from training.prepare.scrub import Blocklist, Scrubber
from training.prepare.sessions import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_SESSION_GAP,
    RawSession,
    Sessionizer,
    TokenCounter,
)
from training.prepare.speakers import SpeakerRegistry, resolve_owner
from training.prepare.workers import MIN_PARALLEL_BYTES, ParallelPrepare, ParallelRead
from training.telegram.messages import Drop, Message, normalise
from training.telegram.stream import ChatHeader, ExportStream, RawMessage

log = logging.getLogger(__name__)

Row = tuple[int, int, str, str, str]  # a clean message: id, date, speaker id, speaker name, text
_SCRUB_SUSPECT = re.compile(r"[\d@<]")
_NEUTRALISE_SUSPECT = re.compile(r"<")

DEFAULT_CHAT_TYPES = ("personal_chat", "private_group", "private_supergroup")
ALL_CHAT_TYPES = (
    "personal_chat",
    "private_group",
    "private_supergroup",
    "public_supergroup",
    "private_channel",
    "public_channel",
    "bot_chat",
    "saved_messages",
    "replies",
    "verification_codes",
)


@dataclass(frozen=True)
class PrepareConfig:
    """Every setting of the stage; the CLI fills it from flags, tests build it directly."""

    exports: tuple[Path, ...]
    out: Path
    me: str | None = None
    session_gap: int = DEFAULT_SESSION_GAP  # seconds
    max_tokens: int = DEFAULT_MAX_TOKENS
    overlap_tokens: int | None = None  # default: a quarter of max_tokens
    tokenizer: Path | None = None
    val_fraction: float = 0.05
    scrub: bool = True
    blocklist: Path | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    chat_types: tuple[str, ...] = DEFAULT_CHAT_TYPES
    since: int | None = None  # unix seconds, inclusive
    until: int | None = None  # unix seconds, exclusive
    keep_forwarded: bool = False
    progress: bool = True
    workers: int | None = None  # processes for pass 1; None: up to 2 when the export is big enough

    def validate(self) -> None:
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


@dataclass
class PrepareResult:
    out: Path
    manifest: dict[str, Any]
    report: str
    stats: PrepareStats = field(repr=False)


@dataclass(frozen=True, slots=True)
class ChatInfo:
    id: int
    name: str | None
    type: str


def prepare(config: PrepareConfig) -> PrepareResult:
    """Run the stage: read ``config.exports``, write the dataset directory ``config.out``."""
    with _collector_paused():
        return _prepare(config)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting still frees everything).

    Prepare allocates millions of short-lived tuples and strings and builds no reference cycles, so the
    collector finds nothing, yet its generation scans cost ~14% of the wall time. Forked workers inherit
    the pause. Peak RSS is unchanged (measured on the 1M-message benchmark).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _prepare(config: PrepareConfig) -> PrepareResult:
    config.validate()
    started = time.perf_counter()
    exports = tuple(resolve_export_path(path) for path in config.exports)
    _check_output_dir(config.out, early=True)
    blocklist = Blocklist.from_file(config.blocklist) if config.blocklist else None
    # None: the default estimate, which pass 3 computes from byte lengths (training.prepare.rows).
    row_tokens = _token_counter(config.tokenizer) if config.tokenizer is not None else None
    stats = PrepareStats(files=[str(path) for path in exports])
    config.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{config.out.name}.", dir=config.out.parent))
    spill: _SessionSpill | None = None
    parallel: ParallelPrepare | None = None
    stack = contextlib.ExitStack()
    try:
        reader = _Reader(config, stats, blocklist)
        registry = SpeakerRegistry()
        owner_ids: set[str] = set()
        workers = _worker_count(config, exports)
        sessions: _SessionSpill | ParallelRead
        if workers > 1:
            parallel = ParallelPrepare(reader, exports[0], workers, scratch, config.session_gap, row_tokens)
            stack.enter_context(parallel)
            with reader.progress_bar(exports) as progress:
                sessions = parallel.read(owner_ids, registry, progress.show)
            reader._hashes.append(sessions.sha256)
        else:
            sessions = spill = _SessionSpill(scratch / "sessions.bin")
            for chat_index, _chat, batches in reader.read(exports, scratch, owner_ids):
                sessionizer = Sessionizer(chat_index, config.session_gap)
                for rows in batches:
                    for finished in sessionizer.add_many(rows):
                        spill.add(finished, stats, registry)
                last = sessionizer.flush()
                if last is not None:
                    spill.add(last, stats, registry)
            spill.finish_writing()
        stats.sha256 = reader.combined_hash()
        _log_phase("pass 1 (read)", started, workers)

        sources = ", ".join(map(str, exports))
        owner_id = resolve_owner(registry, config.me, owner_ids, sources)
        if owner_id not in registry.speakers:
            raise InputError(
                f"{sources}: the owner ({owner_id}) sends no message in the selected chats; "
                "check --me, the chat filters and --since/--until"
            )
        names = registry.finalise(owner_id)
        # The keep rule (two or more turns, the owner speaks after the first): single-turn sessions
        # have no later speakers, so membership alone decides.
        kept = [owner_id in later for later in sessions.later_speakers]
        cutoff = validation_cutoff(
            [start for start, keep in zip(sessions.starts, kept, strict=True) if keep], config.val_fraction
        )
        if not any(kept):
            raise InputError(
                f"{', '.join(map(str, exports))}: no conversation has the owner ({names[owner_id]!r}) answering "
                "anyone; check --me, the chat filters and --since/--until"
            )
        plan = RowPlan(
            names=names,
            owner_id=owner_id,
            cutoff=cutoff,
            max_tokens=config.max_tokens,
            overlap_tokens=config.overlap_tokens if config.overlap_tokens is not None else config.max_tokens // 4,
        )
        _log_phase("pass 2 (decide)", started, workers)

        def load_the_writer() -> None:
            # pyarrow only now: the workers were forked from a parent without it (see prepare_workers), and
            # with workers, only once the first has exited: their memory and pyarrow's never add up.
            _check_output_dir(config.out)
            import training.prepare.writer  # noqa: F401

        if parallel is not None:
            parallel.render(plan, meanwhile=load_the_writer)  # the workers render their own chats
            _log_phase("pass 3 (rendered by the workers)", started, workers)
        else:
            load_the_writer()
        from doppel.formats.dataset import MANIFEST_NAME, REPORT_NAME
        from training.prepare.writer import SplitWriter, write_dataset_dict_index

        staging = scratch / "dataset"
        writers = (SplitWriter(staging / "train", "train"), SplitWriter(staging / "validation", "validation"))

        def emit(chunk: RowChunk) -> None:
            writers[chunk.split].add_chunk(chunk)

        if parallel is not None:
            tally = parallel.collect(emit)
        else:
            tally = render_rows(spill.read_raw(), reader.chats, plan, row_tokens, emit)  # type: ignore[union-attr]
        for writer in writers:
            writer.close()
        _log_phase("pass 3 (write)", started, workers)
        stats.windows += tally.windows
        stats.sessions_kept += tally.sessions_kept
        stats.turns += tally.turns
        stats.window_tokens.extend(tally.window_tokens)
        stats.session_messages.extend(tally.session_messages)
        turn_counts, message_counts = Counter(tally.turn_counts), Counter(tally.message_counts)
        write_dataset_dict_index(staging)
        stats.train_rows, stats.validation_rows = writers[TRAIN].rows, writers[VALIDATION].rows
        stats.seconds = time.perf_counter() - started

        speakers = [
            {
                "id": speaker_id,
                "name": names[speaker_id],
                "messages": message_counts[speaker_id],
                "turns": turn_counts[speaker_id],
                "is_owner": speaker_id == owner_id,
            }
            for speaker_id in sorted(message_counts, key=lambda s: (-message_counts[s], s))
        ]
        manifest = build_manifest(config, stats, owner_id, names[owner_id], speakers, exports, reader)
        report = format_report(stats, manifest)
        (staging / MANIFEST_NAME).write_text(
            msgspec.json.format(msgspec.json.encode(manifest)).decode(), encoding="utf-8"
        )
        (staging / REPORT_NAME).write_text(report + "\n", encoding="utf-8")
        _replace_atomically(staging, config.out)
        log.info("wrote %s: %d train rows, %d validation rows", config.out, stats.train_rows, stats.validation_rows)
        return PrepareResult(out=config.out, manifest=manifest, report=report, stats=stats)
    finally:
        stack.close()  # the workers, if any, are gone before their files are
        if spill is not None:
            spill.finish_writing()
        shutil.rmtree(scratch, ignore_errors=True)


def validation_cutoff(starts: list[int], fraction: float) -> int | None:
    """The start time from which sessions go to validation: the most recent ``fraction`` of them.

    Whole sessions (all their windows) land on one side, and every validation session starts no
    earlier than any training session, so nothing leaks from the future into training.
    """
    if fraction <= 0 or len(starts) < 2:
        return None
    ordered = sorted(starts)
    count = max(1, round(len(ordered) * fraction))
    cutoff = ordered[len(ordered) - count]
    if cutoff == ordered[0]:
        return None  # everything started at once: there is no "later" to hold out
    return cutoff


def resolve_export_path(path: Path) -> Path:
    """An export file, or a Telegram Desktop export folder holding ``result.json``."""
    if path.is_dir():
        candidate = path / "result.json"
        if not candidate.is_file():
            raise InputError(f"{path}: a folder without result.json (point at the export's JSON file)")
        return candidate
    if not path.exists():
        raise InputError(f"{path}: no such file")
    return path


class _Reader:
    """Pass 1: exports in, per-chat streams of clean messages out."""

    def __init__(self, config: PrepareConfig, stats: PrepareStats, blocklist: Blocklist | None) -> None:
        self.config = config
        self.stats = stats
        self.blocklist = blocklist
        self.scrubber = Scrubber() if config.scrub else None
        self.chats: list[ChatInfo] = []
        self._hashes: list[str] = []
        self._include = {value.casefold() for value in config.include}
        self._exclude = {value.casefold() for value in config.exclude}

    def read(
        self, exports: tuple[Path, ...], scratch: Path, owner_ids: set[str]
    ) -> Iterator[tuple[int, ChatInfo, Iterator[Message]]]:
        with self.progress_bar(exports) as progress:
            self._progress = progress
            if len(exports) == 1:
                yield from self._read_direct(exports[0], owner_ids)
            else:
                yield from self._read_merged(exports, scratch / "merge.sqlite", owner_ids)
        if self.scrubber is not None:
            self.stats.scrubbed.update(self.scrubber.counts)

    def progress_bar(self, exports: tuple[Path, ...]) -> PrepareProgress:
        return PrepareProgress(sum(path.stat().st_size for path in exports), enabled=self.config.progress)

    def _show_progress(self, position: int) -> None:
        stats = self.stats
        self._progress.show(position, stats.messages_read + stats.messages_in_skipped_chats)

    def combined_hash(self) -> str:
        if len(self._hashes) == 1:
            return self._hashes[0]
        return hashlib.sha256("\n".join(sorted(self._hashes)).encode()).hexdigest()

    def _read_direct(self, path: Path, owner_ids: set[str]) -> Iterator[tuple[int, ChatInfo, Iterator[Message]]]:
        with ExportStream(path) as export:
            for chat in export.chats():
                self._note_owner(export, owner_ids)
                info = self._select(chat.header, path)
                if info is None:
                    self.stats.messages_in_skipped_chats += chat.skip()
                else:
                    self.chats.append(info)
                    yield len(self.chats) - 1, info, self._batches(export, chat.batches())
                self._show_progress(export.position)
            self._show_progress(export.position)  # the end of the file, past the last chat
            self._note_owner(export, owner_ids)
            self._hashes.append(export.sha256.hexdigest())

    def _read_merged(
        self, exports: tuple[Path, ...], database: Path, owner_ids: set[str]
    ) -> Iterator[tuple[int, ChatInfo, Iterator[Message]]]:
        connection = sqlite3.connect(database)
        connection.execute(
            "CREATE TABLE message (chat INTEGER, id INTEGER, date INTEGER, speaker_id TEXT, speaker_name TEXT,"
            " text TEXT, PRIMARY KEY (chat, id)) WITHOUT ROWID"
        )
        chat_index_by_id: dict[int, int] = {}
        done = 0
        for path in exports:
            with ExportStream(path) as export:
                for chat in export.chats():
                    self._note_owner(export, owner_ids)
                    info = self._select(chat.header, path)
                    if info is None:
                        self.stats.messages_in_skipped_chats += chat.skip()
                        continue
                    if info.id not in chat_index_by_id:
                        chat_index_by_id[info.id] = len(self.chats)
                        self.chats.append(info)
                    chat_index = chat_index_by_id[info.id]
                    before = connection.total_changes
                    inserted = 0
                    for rows in self._batches(export, chat.batches(), offset=done):
                        connection.executemany(
                            "INSERT OR IGNORE INTO message VALUES (?, ?, ?, ?, ?, ?)",
                            [(chat_index, *row) for row in rows],
                        )
                        inserted += len(rows)
                    duplicates = inserted - (connection.total_changes - before)
                    self.stats.dropped[Drop.DUPLICATE] += duplicates
                    self.stats.kept_messages -= duplicates
                self._note_owner(export, owner_ids)
                self._hashes.append(export.sha256.hexdigest())
                done += path.stat().st_size
                self._show_progress(done)
        connection.commit()
        for chat_index, info in enumerate(self.chats):
            cursor = connection.execute(
                "SELECT id, date, speaker_id, speaker_name, text FROM message WHERE chat = ? ORDER BY date, id",
                (chat_index,),
            )
            yield chat_index, info, iter(lambda cursor=cursor: cursor.fetchmany(4096), [])
        connection.close()

    def _note_owner(self, export: ExportStream, owner_ids: set[str]) -> None:
        info = export.personal_information
        if info is not None and isinstance(info.get("user_id"), int | str) and str(info["user_id"]).strip():
            owner_ids.add(f"user{info['user_id']}")

    def _select(self, header: ChatHeader, path: Path) -> ChatInfo | None:
        """The chat's info when the filters admit it; else None, counted by reason."""
        info, reason = self.decide(header)
        self.stats.chats_read += 1
        if info is None:
            self.stats.chats_skipped[reason] += 1
        else:
            self.stats.chats_used += 1
        return info

    def decide(self, header: ChatHeader) -> tuple[ChatInfo | None, str]:
        """The chat's info when the filters admit it, else None and the reason (counts nothing)."""
        chat_type = header.type if isinstance(header.type, str) else "unknown"
        chat_id = header.id if isinstance(header.id, int) and not isinstance(header.id, bool) else -(header.index + 1)
        name = header.name if isinstance(header.name, str) else None
        keys = {str(chat_id)} | ({name.casefold()} if name else set())
        if self._include and not keys & self._include:
            return None, "not in --include"
        if keys & self._exclude:
            return None, "--exclude"
        if not self._include and chat_type not in self.config.chat_types:
            return None, f"type {chat_type}"
        return ChatInfo(id=chat_id, name=name, type=chat_type), ""

    def _batches(self, export: ExportStream, batches: Iterator[list[Any]], offset: int = 0) -> Iterator[list[Row]]:
        """Each batch of raw messages as the rows (id, date, speaker id, name, text) that pass every filter."""
        clean = self._clean
        for batch in batches:
            yield clean(batch)
            self._show_progress(offset + export.position)

    def _clean(self, batch: list[RawMessage]) -> list[Row]:
        """Normalise, filter and scrub one batch (:func:`training.telegram.messages.normalise` and the filters, fused).

        One tight loop per batch instead of a few calls per message: this is most of pass 1's time. A plain
        text message (nearly all of them) is recognised inline, and gives what :func:`normalise` would;
        anything else goes through normalise.
        """
        stats, config, blocklist, scrubber = self.stats, self.config, self.blocklist, self.scrubber
        since, until = config.since, config.until
        ranged = since is not None or until is not None
        keep_forwarded = config.keep_forwarded
        dropped = stats.dropped
        # Text without a digit, '@' or '<' needs neither scrubbing nor neutralising: one search decides.
        suspect = (_SCRUB_SUSPECT if scrubber is not None else _NEUTRALISE_SUSPECT).search
        unset = msgspec.UNSET
        rows: list[Row] = []
        append = rows.append
        for raw in batch:
            text = raw.text
            if (
                text.__class__ is str
                and raw.type == "message"
                and raw.media_type is None
                and raw.forwarded_from is unset
                and raw.via_bot is unset
                and raw.saved_from is unset
                and raw.action is None
                and raw.id.__class__ is int
                and (stamp := raw.date_unixtime).__class__ is str
                and (speaker_id := raw.from_id).__class__ is str
                and (name := raw.sender).__class__ is str
                and stamp.isdigit()
                and not text.isspace()
                and text
            ):
                message_id, date = raw.id, int(stamp)
            else:
                message = normalise(raw, keep_forwarded=keep_forwarded)
                if isinstance(message, Drop):
                    dropped[message] += 1
                    continue
                message_id, date, speaker_id, name, text = (
                    message.id,
                    message.date,
                    message.speaker_id,
                    message.speaker_name,
                    message.text,
                )
            if ranged and ((since is not None and date < since) or (until is not None and date >= until)):
                dropped[Drop.OUT_OF_RANGE] += 1
                continue
            if blocklist is not None and blocklist.matches(text):
                dropped[Drop.BLOCKLISTED] += 1
                continue
            if suspect(text) is not None:
                text = neutralise(scrubber(text) if scrubber is not None else text)
            append((message_id, date, speaker_id, name, text))
        stats.messages_read += len(batch)
        stats.kept_messages += len(rows)
        return rows


class _SessionSpill:
    """Sessions on disk between pass 1 and pass 3, with a small in-memory index for pass 2."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.starts: array[int] = array("q")
        self.later_speakers: list[frozenset[str]] = []
        self._shared: dict[frozenset[str], frozenset[str]] = {}
        self._handle: BinaryIO = path.open("wb")
        self._encoder = msgspec.msgpack.Encoder()

    def add(self, session: RawSession, stats: PrepareStats, registry: SpeakerRegistry) -> None:
        for speaker_id, name, texts in session.turns:
            registry.observe(speaker_id, name, session.end, session.chat_index, len(texts))
        stats.sessions_found += 1
        if len(session.turns) < 2:
            stats.sessions_dropped["a single turn"] += 1
        spilled = (session.chat_index, session.start, session.end, session.messages, session.turns)
        self._handle.write(frame(self._encoder.encode(spilled)))
        # Pass 2 needs only when each session started and who speaks after its first turn. Sessions of
        # one chat mostly share that set of speakers, so equal sets are stored once.
        later = frozenset(turn[0] for turn in session.turns[1:]) if len(session.turns) > 1 else frozenset()
        self.starts.append(session.start)
        self.later_speakers.append(self._shared.setdefault(later, later))

    def finish_writing(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def read_raw(self) -> Iterator[SpilledSession]:
        """The sessions as stored: ``(chat index, start, end, messages, [(speaker id, name, texts)])``."""
        return read_framed(self.path, SpilledSession)


def build_manifest(
    config: PrepareConfig,
    stats: PrepareStats,
    owner_id: str,
    owner_name: str,
    speakers: list[dict[str, Any]],
    exports: tuple[Path, ...],
    reader: _Reader,
) -> dict[str, Any]:
    from doppel.formats.dataset import DATASET_FORMAT  # here, not at the top: imports pyarrow

    settings = asdict(config)
    settings["exports"] = [path.name for path in exports]
    settings["out"] = str(config.out)
    for key in ("tokenizer", "blocklist"):
        settings[key] = str(settings[key]) if settings[key] is not None else None
    settings["overlap_tokens"] = config.overlap_tokens if config.overlap_tokens is not None else config.max_tokens // 4
    settings["blocklist_size"] = reader.blocklist.size if reader.blocklist else 0
    settings["token_estimate"] = "tokenizer" if config.tokenizer else "utf8-bytes/3.5"
    settings.pop("progress")
    settings.pop("workers")  # how the work was spread changes nothing in the dataset
    return {
        "format": DATASET_FORMAT,
        "program": {"name": "doppel", "version": __version__},
        "owner": {"id": owner_id, "name": owner_name},
        "speakers": speakers,
        "message_format": {"template": "chatml", "message_prefix": ">>> ", "roles": "speaker names"},
        "settings": settings,
        "source": {
            "sha256": stats.sha256,
            "files": [{"name": path.name, "bytes": path.stat().st_size} for path in exports],
        },
        "counts": stats.counts(),
        "splits": {"train": stats.train_rows, "validation": stats.validation_rows},
    }


def _log_phase(phase: str, started: float, workers: int) -> None:
    if log.isEnabledFor(logging.DEBUG):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        log.debug("%s done at %.2f s (%d workers), peak RSS %d MB", phase, time.perf_counter() - started, workers, peak)


def _worker_count(config: PrepareConfig, exports: tuple[Path, ...]) -> int:
    """Processes for passes 1 and 3: one per core up to two, for a single export big enough to be worth it.

    Several exports are merged through SQLite first, which is one stream: they are read in-process.
    """
    if len(exports) != 1:
        return 1
    if config.workers is not None:
        return config.workers
    if exports[0].stat().st_size < MIN_PARALLEL_BYTES:
        return 1
    cores = usable_cpus()
    # Two, not one per core: every worker walks the whole file (skipping what others claimed), so each
    # one more buys less, and each costs ~27 MB of the 150 MB that all of prepare's processes share.
    return min(2, cores)


def _token_counter(tokenizer: Path) -> TokenCounter:
    try:
        from transformers import AutoTokenizer

        if tokenizer.suffix == ".gguf":
            loaded = AutoTokenizer.from_pretrained(str(tokenizer.parent), gguf_file=tokenizer.name)
        else:
            loaded = AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError) as error:
        raise InputError(f"{tokenizer}: cannot load a tokenizer from it ({error})") from None
    return lambda text: len(loaded(text, add_special_tokens=False)["input_ids"])


def _check_output_dir(out: Path, *, early: bool = False) -> None:
    """Refuse to replace anything but an earlier doppel dataset (or an empty folder).

    ``early``: before pass 1, only a folder without a manifest is refused. The full check reads the
    manifest with doppel.formats.dataset, which imports pyarrow; done before the workers fork, that would
    cost every process pyarrow's memory. So it runs again, fully, once pass 1 is over.
    """
    if out.exists():
        if out.is_file():
            raise InputError(f"{out}: exists and is a file; --out needs a directory")
        if any(out.iterdir()):
            refused = InputError(f"{out}: exists and is not a doppel dataset; refusing to overwrite it")
            if early:
                if not (out / "manifest.json").is_file():
                    raise refused
                return
            from doppel.formats.dataset import load_manifest  # here, not at the top: imports pyarrow

            try:
                load_manifest(out)
            except InputError:
                raise refused from None


def _replace_atomically(staging: Path, out: Path) -> None:
    previous = None
    if out.exists():
        previous = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(previous)
    staging.rename(out)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
