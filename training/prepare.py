"""``doppel prepare``: Telegram Desktop exports in, a ChatML training set out.

    doppel prepare result.json --out dataset/ [--me NAME_OR_ID] [--session-gap 30m] [--max-tokens 1024]

Three passes, each in flat memory:
1. read: stream every export (training.export_stream), normalise and filter messages, scrub them, and
   cut each chat into sessions, which are spilled to a scratch file with speakers still as ids.
   (Several exports are merged first through a scratch SQLite table, so a message seen twice counts once.)
2. decide: with all speakers seen, settle the owner and each speaker's one name (the latest), keep the
   sessions where the owner speaks after the first turn, and put the most recent share into validation.
3. write: render each kept session (windowed when long) with the shared ChatML renderer into the
   train and validation splits, then the manifest and the report. The output directory appears
   atomically: a failed run leaves no half-written dataset behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import struct
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
from tqdm import tqdm

from doppel import __version__
from training.chatml import Turn, neutralise, render_turn
from training.dataset_format import DATASET_FORMAT, MANIFEST_NAME, REPORT_NAME, load_manifest
from training.dataset_writer import SplitWriter, write_dataset_dict_index
from training.errors import InputError
from training.export_stream import ChatHeader, ExportStream
from training.messages import Drop, Message, normalise
from training.report import PrepareStats, format_report
from training.scrub import Blocklist, Scrubber
from training.sessions import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_SESSION_GAP,
    RawSession,
    Sessionizer,
    TokenCounter,
    estimate_tokens,
    split_long_turns,
    windows,
)
from training.speakers import SpeakerRegistry, resolve_owner

log = logging.getLogger(__name__)

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

    def validate(self) -> None:
        if not self.exports:
            raise InputError("no export given")
        if self.session_gap <= 0:
            raise InputError(f"--session-gap must be positive, got {self.session_gap} s")
        if self.max_tokens < 32:
            raise InputError(f"--max-tokens must be at least 32, got {self.max_tokens}")
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
    config.validate()
    started = time.perf_counter()
    exports = tuple(resolve_export_path(path) for path in config.exports)
    _check_output_dir(config.out)
    blocklist = Blocklist.from_file(config.blocklist) if config.blocklist else None
    count_tokens = _token_counter(config.tokenizer)
    stats = PrepareStats(files=[str(path) for path in exports])
    config.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{config.out.name}.", dir=config.out.parent))
    spill: _SessionSpill | None = None
    try:
        reader = _Reader(config, stats, blocklist)
        spill = _SessionSpill(scratch / "sessions.bin")
        registry = SpeakerRegistry()
        owner_ids: set[str] = set()
        for chat_index, _chat, messages in reader.read(exports, scratch, owner_ids):
            sessionizer = Sessionizer(chat_index, config.session_gap)
            add = sessionizer.add
            for message in messages:
                finished = add(message.date, message.speaker_id, message.speaker_name, message.text)
                if finished is not None:
                    spill.add(finished, stats, registry)
            last = sessionizer.flush()
            if last is not None:
                spill.add(last, stats, registry)
        spill.finish_writing()
        stats.sha256 = reader.combined_hash()

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
        kept = [owner_id in later for later in spill.later_speakers]
        cutoff = validation_cutoff(
            [start for start, keep in zip(spill.starts, kept, strict=True) if keep], config.val_fraction
        )
        if not any(kept):
            raise InputError(
                f"{', '.join(map(str, exports))}: no conversation has the owner ({names[owner_id]!r}) answering "
                "anyone; check --me, the chat filters and --since/--until"
            )

        staging = scratch / "dataset"
        writers = {split: SplitWriter(staging / split, split) for split in ("train", "validation")}
        turn_counts: Counter[str] = Counter()
        message_counts: Counter[str] = Counter()
        for session, keep in zip(spill.read(), kept, strict=True):
            if not keep:
                continue
            chat = reader.chats[session.chat_index]
            turns = [Turn(names[speaker], tuple(texts)) for speaker, _, texts in session.turns]
            for speaker, _, texts in session.turns:
                turn_counts[speaker] += 1
                message_counts[speaker] += len(texts)
            split = "validation" if cutoff is not None and session.start >= cutoff else "train"
            for row in session_rows(session, chat, turns, count_tokens, config):
                writers[split].write(row)
                stats.windows += 1
                stats.window_tokens.append(row["n_tokens"])
            stats.sessions_kept += 1
            stats.turns += len(session.turns)
            stats.session_messages.append(session.messages)
        for writer in writers.values():
            writer.close()
        write_dataset_dict_index(staging)
        stats.train_rows, stats.validation_rows = writers["train"].rows, writers["validation"].rows
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
        if spill is not None:
            spill.finish_writing()
        shutil.rmtree(scratch, ignore_errors=True)


def session_rows(
    session: RawSession, chat: ChatInfo, turns: list[Turn], count_tokens: TokenCounter, config: PrepareConfig
) -> Iterator[dict[str, Any]]:
    """One dataset row per window of the session (one row when it fits)."""
    rendered = [render_turn(turn.speaker, turn.messages) for turn in turns]
    costs = [count_tokens(text) for text in rendered]
    if max(costs) > config.max_tokens:
        turns = split_long_turns(turns, count_tokens, config.max_tokens)
        rendered = [render_turn(turn.speaker, turn.messages) for turn in turns]
        costs = [count_tokens(text) for text in rendered]
    overlap = config.overlap_tokens if config.overlap_tokens is not None else config.max_tokens // 4
    for window_index, (start, end) in enumerate(windows(costs, config.max_tokens, overlap)):
        window_turns = turns[start:end]
        yield {
            "session_id": f"{chat.id}:{session.start}#{window_index}",
            "chat_id": chat.id,
            "chat_type": chat.type,
            "start": session.start,
            "end": session.end,
            "window": window_index,
            "turns": [{"speaker": turn.speaker, "messages": list(turn.messages)} for turn in window_turns],
            "text": "".join(rendered[start:end]),
            "n_tokens": sum(costs[start:end]),
        }


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
        total = sum(path.stat().st_size for path in exports)
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="prepare",
            disable=None if self.config.progress else True,  # None: only on a terminal
            leave=False,
        ) as bar:
            self._bar = bar
            if len(exports) == 1:
                yield from self._read_direct(exports[0], owner_ids)
            else:
                yield from self._read_merged(exports, scratch / "merge.sqlite", owner_ids)
        if self.scrubber is not None:
            self.stats.scrubbed.update(self.scrubber.counts)

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
                    yield len(self.chats) - 1, info, self._messages(export, chat.batches(), path, info)
                self._bar.update(export.position - self._bar.n)
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
                    for message in self._messages(export, chat.batches(), path, info, offset=done):
                        connection.execute(
                            "INSERT OR IGNORE INTO message VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                chat_index,
                                message.id,
                                message.date,
                                message.speaker_id,
                                message.speaker_name,
                                message.text,
                            ),
                        )
                        inserted += 1
                    duplicates = inserted - (connection.total_changes - before)
                    self.stats.dropped[Drop.DUPLICATE] += duplicates
                    self.stats.kept_messages -= duplicates
                self._note_owner(export, owner_ids)
                self._hashes.append(export.sha256.hexdigest())
                done += path.stat().st_size
        connection.commit()
        for chat_index, info in enumerate(self.chats):
            rows = connection.execute(
                "SELECT id, date, speaker_id, speaker_name, text FROM message WHERE chat = ? ORDER BY date, id",
                (chat_index,),
            )
            yield chat_index, info, (Message(*row) for row in rows)
        connection.close()

    def _note_owner(self, export: ExportStream, owner_ids: set[str]) -> None:
        info = export.personal_information
        if info is not None and isinstance(info.get("user_id"), int | str) and str(info["user_id"]).strip():
            owner_ids.add(f"user{info['user_id']}")

    def _select(self, header: ChatHeader, path: Path) -> ChatInfo | None:
        """The chat's info when the filters admit it; else None, counted by reason."""
        self.stats.chats_read += 1
        chat_type = header.type if isinstance(header.type, str) else "unknown"
        chat_id = header.id if isinstance(header.id, int) and not isinstance(header.id, bool) else -(header.index + 1)
        name = header.name if isinstance(header.name, str) else None
        keys = {str(chat_id)} | ({name.casefold()} if name else set())
        if self._include and not keys & self._include:
            self.stats.chats_skipped["not in --include"] += 1
            return None
        if keys & self._exclude:
            self.stats.chats_skipped["--exclude"] += 1
            return None
        if not self._include and chat_type not in self.config.chat_types:
            self.stats.chats_skipped[f"type {chat_type}"] += 1
            return None
        self.stats.chats_used += 1
        return ChatInfo(id=chat_id, name=name, type=chat_type)

    def _messages(
        self, export: ExportStream, batches: Iterator[list[Any]], path: Path, chat: ChatInfo, offset: int = 0
    ) -> Iterator[Message]:
        stats, config, blocklist, scrubber = self.stats, self.config, self.blocklist, self.scrubber
        since, until = config.since, config.until
        dropped = stats.dropped
        kept = 0
        for batch in batches:
            stats.messages_read += len(batch)
            for raw in batch:
                message = normalise(raw, keep_forwarded=config.keep_forwarded)
                if isinstance(message, Drop):
                    dropped[message] += 1
                    continue
                if (since is not None and message.date < since) or (until is not None and message.date >= until):
                    dropped[Drop.OUT_OF_RANGE] += 1
                    continue
                text = message.text
                if blocklist is not None and blocklist.matches(text):
                    dropped[Drop.BLOCKLISTED] += 1
                    continue
                cleaned = neutralise(scrubber(text) if scrubber is not None else text)
                kept += 1
                yield (
                    message
                    if cleaned is text
                    else Message(message.id, message.date, message.speaker_id, message.speaker_name, cleaned)
                )
            stats.kept_messages += kept
            kept = 0
            self._bar.update(offset + export.position - self._bar.n)


class _SessionSpill:
    """Sessions on disk between pass 1 and pass 3, with a small in-memory index for pass 2."""

    _LENGTH = struct.Struct("<I")

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
        payload = self._encoder.encode(
            (session.chat_index, session.start, session.end, session.messages, session.turns)
        )
        self._handle.write(self._LENGTH.pack(len(payload)))
        self._handle.write(payload)
        # Pass 2 needs only when each session started and who speaks after its first turn. Sessions of
        # one chat mostly share that set of speakers, so equal sets are stored once.
        later = frozenset(turn[0] for turn in session.turns[1:]) if len(session.turns) > 1 else frozenset()
        self.starts.append(session.start)
        self.later_speakers.append(self._shared.setdefault(later, later))

    def finish_writing(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def read(self) -> Iterator[RawSession]:
        decoder = msgspec.msgpack.Decoder()
        with self.path.open("rb") as handle:
            while header := handle.read(self._LENGTH.size):
                (length,) = self._LENGTH.unpack(header)
                chat_index, start, end, messages, turns = decoder.decode(handle.read(length))
                yield RawSession(chat_index, start, end, [tuple(turn) for turn in turns], messages)


def build_manifest(
    config: PrepareConfig,
    stats: PrepareStats,
    owner_id: str,
    owner_name: str,
    speakers: list[dict[str, Any]],
    exports: tuple[Path, ...],
    reader: _Reader,
) -> dict[str, Any]:
    settings = asdict(config)
    settings["exports"] = [path.name for path in exports]
    settings["out"] = str(config.out)
    for key in ("tokenizer", "blocklist"):
        settings[key] = str(settings[key]) if settings[key] is not None else None
    settings["overlap_tokens"] = config.overlap_tokens if config.overlap_tokens is not None else config.max_tokens // 4
    settings["blocklist_size"] = reader.blocklist.size if reader.blocklist else 0
    settings["token_estimate"] = "tokenizer" if config.tokenizer else "utf8-bytes/3.5"
    settings.pop("progress")
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


def _token_counter(tokenizer: Path | None) -> TokenCounter:
    if tokenizer is None:
        return estimate_tokens
    try:
        from transformers import AutoTokenizer

        if tokenizer.suffix == ".gguf":
            loaded = AutoTokenizer.from_pretrained(str(tokenizer.parent), gguf_file=tokenizer.name)
        else:
            loaded = AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError) as error:
        raise InputError(f"{tokenizer}: cannot load a tokenizer from it ({error})") from None
    return lambda text: len(loaded(text, add_special_tokens=False)["input_ids"])


def _check_output_dir(out: Path) -> None:
    """Refuse to replace anything but an earlier doppel dataset (or an empty folder)."""
    if out.exists():
        if out.is_file():
            raise InputError(f"{out}: exists and is a file; --out needs a directory")
        if any(out.iterdir()):
            try:
                load_manifest(out)
            except InputError:
                raise InputError(f"{out}: exists and is not a doppel dataset; refusing to overwrite it") from None


def _replace_atomically(staging: Path, out: Path) -> None:
    previous = None
    if out.exists():
        previous = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(previous)
    staging.rename(out)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
