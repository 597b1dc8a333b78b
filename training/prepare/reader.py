"""Pass 1 of ``doppel prepare``, the reading half: exports in, per-chat streams of clean messages out.

:class:`ExportReader` streams each export (``training.telegram.stream``), decides which chats the filters
admit, and turns each batch of raw messages into rows ``(id, date, speaker id, speaker name, text)``:
normalised, filtered by date and blocklist, scrubbed and neutralised. Several exports are merged through a
scratch SQLite table, so a message seen twice counts once. The serial read and every worker process
(``training.prepare.workers``) use this one reader, so both clean exactly alike.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from doppel.chatml import neutralise
from doppel.errors import InputError
from training.prepare.config import PrepareConfig
from training.prepare.progress import PrepareProgress
from training.prepare.report import PrepareStats
from training.prepare.scrub import Blocklist, Scrubber
from training.telegram.messages import Drop, Message, normalise
from training.telegram.stream import ChatHeader, ExportStream, RawMessage

Row = tuple[int, int, str, str, str]  # a clean message: id, date, speaker id, speaker name, text
# Text without these needs neither scrubbing nor neutralising (see doppel.chatml.neutralise): one search decides.
_SCRUB_SUSPECT = re.compile(r"[\d@<]|>>>")
_NEUTRALISE_SUSPECT = re.compile(r"<|>>>")


@dataclass(frozen=True, slots=True)
class ChatInfo:
    id: int
    name: str | None
    type: str


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


def owner_id_of(personal_information: dict[str, Any] | None) -> str | None:
    """The owner's speaker id (``user<id>``) from a full export's ``personal_information``, if it names one."""
    if personal_information is None:
        return None
    user_id = personal_information.get("user_id")
    if isinstance(user_id, int | str) and str(user_id).strip():
        return f"user{user_id}"
    return None


class ExportReader:
    """Pass 1: exports in, per-chat streams of clean messages out."""

    def __init__(self, config: PrepareConfig, stats: PrepareStats, blocklist: Blocklist | None) -> None:
        self.config = config
        self.stats = stats
        self.blocklist = blocklist
        self.scrubber = Scrubber() if config.scrub else None
        self.chats: list[ChatInfo] = []
        self.hashes: list[str] = []  # one per export file (or per worker read), combined in the manifest
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
        if len(self.hashes) == 1:
            return self.hashes[0]
        return hashlib.sha256("\n".join(sorted(self.hashes)).encode()).hexdigest()

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
            self.hashes.append(export.sha256.hexdigest())

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
                self.hashes.append(export.sha256.hexdigest())
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
        owner = owner_id_of(export.personal_information)
        if owner is not None:
            owner_ids.add(owner)

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
        clean = self.clean
        for batch in batches:
            yield clean(batch)
            self._show_progress(offset + export.position)

    def clean(self, batch: list[RawMessage]) -> list[Row]:
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
