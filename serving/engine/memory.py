"""The engine's memory: a persona's own past exchanges that look most like the message being answered.

    with Memory.open(Path("dataset")) as memory:      # builds the index on the first open, reuses it after
        memory.personas()                              # {"Olga": 4210, "Anna": 1830, ...}: replies per persona
        memory.examples("Olga", "free tonight?", k=3)
        # [(ChatTurn("Anna", ("are you free tonight?",)), ChatTurn("Olga", ("yep, see you at 7",))), ...]

The prompt builder puts these exchanges before the live conversation, so any ChatML model can play the owner (or
a friend) from their own history without training: the context window instead of fine-tuning.

What is indexed: every exchange of the prepared dataset's **train** split (validation sessions are held out for
evaluation and must never reach a prompt), that is, wherever a turn of speaker P directly follows a turn of another
speaker Q. Q's messages (joined with newlines) are what a query searches; P's reply, both names, the session and
the turn before Q's (the context) are stored with them. A long session that prepare cut into overlapping windows
is stitched back together first, so an exchange across a window boundary is found and none is found twice.

Where: ``<data dir>/memory/<key>.sqlite`` (:func:`doppel.paths.data_dir`), an SQLite FTS5 index whose key is a
hash of the dataset's content (the source's sha256 and the split fingerprints) and of this index format. It is
built once into a temporary file and renamed into place, so an open never sees half an index, the next open
reuses it, and a changed dataset gets a new one. Indexes of older versions of a dataset stay until deleted.

How a query is made: the incoming text is split into terms by the index's own tokenizer (case and diacritics
folded, punctuation and emoji dropped), so a term means exactly what it means in the index, and every term is
quoted: nothing a user writes is FTS syntax. One-character terms are dropped, terms the index lacks too, and so
are this history's stop words, terms in more than ``COMMON_TERM_SHARE`` of all exchanges ("the", "you", "и"),
unless nothing else is left: bm25 gives them little weight, and on a million messages they made queries twice as
slow. At most ``MAX_TERMS`` terms, the rarest, are ORed and ranked by ``bm25``, ties in dataset order.

:meth:`Memory.examples` returns ``min(k, the persona's exchanges)`` examples: the best matches first, then, if
fewer than ``k`` match (or the text has no usable term, like an emoji or an empty message), the persona's most
recent exchanges. Recent replies are still the best sample of how the persona writes now, and a
prompt with a few examples is better than one with none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from doppel.formats.dataset import SPLITS, iter_split_rows, load_manifest, split_fingerprint
from doppel.paths import data_dir
from serving.engine.types import ChatTurn

logger = logging.getLogger(__name__)

INDEX_FORMAT = "doppel-memory/1"  # part of the key: a change to what is indexed, or how, makes new indexes
MEMORY_DIR = "memory"
# Letters, numbers, private use and combining marks (M*) are token characters: without M*, scripts whose vowels
# are combining marks (Devanagari, Thai...) fall apart into single letters. remove_diacritics 2 still folds
# "café", "cafe\u0301" and "CAFE" into one term.
TOKENIZER = "unicode61 remove_diacritics 2 categories 'L* N* Co M*'"
MIN_TERM_CHARS = 2
MAX_TERMS = 32
COMMON_TERM_SHARE = 0.1  # stop words are found from the history itself: it may be in any language
BATCH_ROWS = 2000  # exchanges per executemany while building: memory stays flat whatever the dataset's size

_SCHEMA = f"""
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE exchange (
    id INTEGER PRIMARY KEY,   -- dataset order: ties in rank go to the earlier exchange
    session TEXT NOT NULL,    -- the row's session id without its window suffix
    start INTEGER NOT NULL,   -- the session's start (unix seconds): "most recent" orders by it
    persona TEXT NOT NULL,    -- P, who replied
    partner TEXT NOT NULL,    -- Q, who was answered
    incoming TEXT NOT NULL,   -- Q's messages, a JSON list
    reply TEXT NOT NULL,      -- P's messages, a JSON list
    context_speaker TEXT,     -- the turn before Q's, if any
    context TEXT              -- its messages, a JSON list
);
CREATE VIRTUAL TABLE exchange_text USING fts5(incoming, content='', tokenize="{TOKENIZER}");
"""
_INSERT_EXCHANGE = "INSERT INTO exchange VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_TEXT = "INSERT INTO exchange_text (rowid, incoming) VALUES (?, ?)"
# Per connection: the query text goes through the index's tokenizer, and the index's vocabulary gives each
# term's document count. temp tables are writable on a read-only connection.
_QUERY_SCHEMA = (
    f'CREATE VIRTUAL TABLE temp.query USING fts5(text, tokenize="{TOKENIZER}")',
    "CREATE VIRTUAL TABLE temp.query_terms USING fts5vocab(temp, query, 'instance')",
    "CREATE VIRTUAL TABLE temp.index_terms USING fts5vocab(main, exchange_text, 'row')",
)
_COLUMNS = "e.id, e.partner, e.incoming, e.persona, e.reply, e.context_speaker, e.context"
# FTS first (CROSS JOIN keeps that order): bm25() needs the full-text cursor to drive the query.
_MATCHES = f"""
SELECT {_COLUMNS} FROM exchange_text CROSS JOIN exchange AS e ON e.id = exchange_text.rowid
WHERE exchange_text MATCH ? AND e.persona = ? AND e.session IS NOT ?
ORDER BY bm25(exchange_text), e.id LIMIT ?
"""
_RECENT = f"""
SELECT {_COLUMNS} FROM exchange AS e WHERE e.persona = ? AND e.session IS NOT ?
ORDER BY e.start DESC, e.id DESC LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class Exchange:
    """A reply and what it answered: ``reply`` directly follows ``incoming``; ``context`` came just before."""

    context: ChatTurn | None
    incoming: ChatTurn
    reply: ChatTurn


def exchanges_of(turns: Sequence[ChatTurn]) -> Iterator[Exchange]:
    """Every exchange of one conversation, in order: each turn that follows another speaker's turn.

    Consecutive turns of one speaker (an over-long turn that prepare split for its window) count as one.
    """
    merged: list[ChatTurn] = []
    for turn in turns:
        if merged and merged[-1].speaker == turn.speaker:
            merged[-1] = ChatTurn(turn.speaker, merged[-1].messages + turn.messages)
        else:
            merged.append(turn)
    for index in range(1, len(merged)):
        yield Exchange(merged[index - 2] if index >= 2 else None, merged[index - 1], merged[index])


def session_of(session_id: str) -> str:
    """A row's session id without its window suffix (``"42:1700000000#1"`` is session ``"42:1700000000"``)."""
    return session_id.rsplit("#", 1)[0]


def index_key(dataset_dir: Path, manifest: Mapping[str, Any]) -> str:
    """Names the index of this dataset's content: the same content anywhere shares one index."""
    parts = {
        "format": INDEX_FORMAT,
        "source": manifest.get("source"),
        "splits": {split: split_fingerprint(dataset_dir, split) for split in SPLITS},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class Memory:
    """A read-only view of one dataset's exchange index; open it with :meth:`open`, close it when done.

    One instance may be shared between threads (queries take turns on one connection).
    """

    def __init__(self, connection: sqlite3.Connection, dataset_dir: Path, index_path: Path, built: bool) -> None:
        self.dataset_dir = dataset_dir
        self.index_path = index_path
        self.built = built  # whether this open built the index (False: an earlier one's was reused)
        self._db = connection
        self._lock = threading.Lock()
        self._exchanges = int(dict(connection.execute("SELECT name, value FROM meta"))["exchanges"])
        for statement in _QUERY_SCHEMA:
            connection.execute(statement)

    @classmethod
    def open(cls, dataset_dir: Path) -> Memory:
        """The memory of a prepared dataset, building its index if this content has none yet.

        A missing or damaged dataset is an :class:`doppel.errors.InputError` naming the file.
        """
        manifest = load_manifest(dataset_dir)
        key = index_key(dataset_dir, manifest)
        index_path = data_dir() / MEMORY_DIR / f"{key}.sqlite"
        connection = _open_index(index_path, key)
        built = connection is None
        if connection is None:
            _build_index(dataset_dir, index_path, key)
            connection = _open_index(index_path, key)
            if connection is None:  # only if someone damaged it in the instant since the rename
                raise RuntimeError(f"{index_path}: the memory index just built does not open")
        return cls(connection, dataset_dir, index_path, built)

    def personas(self) -> dict[str, int]:
        """Persona name → how many of their replies are indexed, most first (ties by name)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT persona, count(*) AS n FROM exchange GROUP BY persona ORDER BY n DESC, persona"
            ).fetchall()
        return {str(name): int(count) for name, count in rows}

    def examples(
        self,
        persona: str,
        incoming: str,
        k: int = 3,
        exclude_session: str | None = None,
        with_context: bool = False,
    ) -> list[tuple[ChatTurn, ...]]:
        """Up to ``k`` exchanges in which ``persona`` answered something like ``incoming``, best first.

        Each is ``(ChatTurn(partner, messages), ChatTurn(persona, messages))``, with the turn before the partner's
        in front when ``with_context`` and there is one. Fewer than ``k`` matches are topped up with the
        persona's most recent exchanges (see the module's docstring). ``exclude_session`` (a row's session id,
        with or without its ``#window``) leaves out that whole session, e.g. the one being evaluated.
        """
        if k <= 0:
            return []
        excluded = session_of(exclude_session) if exclude_session is not None else None
        with self._lock:
            terms = self._terms(incoming)
            rows = []
            if terms:
                query = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
                rows = self._db.execute(_MATCHES, (query, persona, excluded, k)).fetchall()
            matched = len(rows)
            if matched < k:
                chosen = {row[0] for row in rows}
                recent = self._db.execute(_RECENT, (persona, excluded, k + matched)).fetchall()
                rows += [row for row in recent if row[0] not in chosen][: k - matched]
        logger.debug("memory: %d terms, %d matches, %d recent", len(terms), matched, len(rows) - matched)
        return [_example(row, with_context) for row in rows]

    def _terms(self, incoming: str) -> list[str]:
        """The query terms of a text: the index tokenizer's, without the useless ones, rarest first."""
        self._db.execute("DELETE FROM temp.query")
        self._db.execute("INSERT INTO temp.query (rowid, text) VALUES (1, ?)", (incoming,))
        firsts = self._db.execute("SELECT term, min(offset) FROM temp.query_terms GROUP BY term").fetchall()
        candidates = {str(term): int(first) for term, first in firsts if len(term) >= MIN_TERM_CHARS}
        if not candidates:
            return []
        marks = ", ".join("?" * len(candidates))
        counts = dict(
            self._db.execute(f"SELECT term, doc FROM temp.index_terms WHERE term IN ({marks})", list(candidates))
        )
        present = [term for term in candidates if counts.get(term, 0) > 0]  # the others can match nothing
        rare = [term for term in present if counts[term] <= self._exchanges * COMMON_TERM_SHARE]
        # Rarest first, then in the order the text has them: the cut at MAX_TERMS keeps the telling ones.
        return sorted(rare or present, key=lambda term: (counts[term], candidates[term]))[:MAX_TERMS]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _example(row: Sequence[Any], with_context: bool) -> tuple[ChatTurn, ...]:
    _, partner, incoming, persona, reply, context_speaker, context = row
    turns = (ChatTurn(partner, tuple(json.loads(incoming))), ChatTurn(persona, tuple(json.loads(reply))))
    if with_context and context_speaker is not None:
        return (ChatTurn(context_speaker, tuple(json.loads(context))), *turns)
    return turns


def _open_index(index_path: Path, key: str) -> sqlite3.Connection | None:
    """The index at ``index_path`` opened read-only, or None when it is absent, of another key, or unreadable."""
    if not index_path.is_file():
        return None
    connection = sqlite3.connect(f"{index_path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        meta = dict(connection.execute("SELECT name, value FROM meta"))
        if meta.get("format") == INDEX_FORMAT and meta.get("key") == key and "exchanges" in meta:
            return connection
    except sqlite3.DatabaseError:
        pass  # damaged or not ours: build it again
    connection.close()
    return None


def _build_index(dataset_dir: Path, index_path: Path, key: str) -> None:
    """Write the index of ``dataset_dir``'s train split to ``index_path``, atomically (a temporary file, renamed)."""
    started = time.perf_counter()
    index_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=index_path.parent, prefix=f".{key}.", suffix=".tmp")
    os.close(handle)
    try:
        connection = sqlite3.connect(temporary)
        try:
            # The file is renamed into place only once complete, so a crash can only leave a temporary file:
            # no journal, no syncing until the end.
            connection.execute("PRAGMA journal_mode = OFF")
            connection.execute("PRAGMA synchronous = OFF")
            connection.executescript(_SCHEMA)
            count = _insert_exchanges(connection, _train_exchanges(dataset_dir))
            connection.execute("CREATE INDEX exchange_by_persona ON exchange (persona, start, id)")
            connection.execute("INSERT INTO exchange_text (exchange_text) VALUES ('optimize')")  # one b-tree
            connection.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("format", INDEX_FORMAT), ("key", key), ("dataset", str(dataset_dir)), ("exchanges", str(count))],
            )
            connection.commit()
        finally:
            connection.close()
        with Path(temporary).open("rb") as written:
            os.fsync(written.fileno())
        Path(temporary).replace(index_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info(
        "memory: indexed %d exchanges of %s in %.2f s (%s)",
        count,
        dataset_dir,
        time.perf_counter() - started,
        index_path,
    )


def stitch_windows(turns: list[ChatTurn], window: Sequence[ChatTurn]) -> None:
    """Append the next window of a session to its turns so far, without the turns it repeats.

    A window starts with the previous one's last turns (prepare's overlap, never the whole window); the longest
    such repetition is the overlap.
    """
    for overlap in range(min(len(turns), len(window) - 1), 0, -1):
        if turns[-overlap:] == list(window[:overlap]):
            turns.extend(window[overlap:])
            return
    turns.extend(window)


def _train_sessions(dataset_dir: Path) -> Iterator[tuple[str, int, list[ChatTurn]]]:
    """``(session, start, turns)`` for every session of the train split, its windows stitched together."""
    current: str | None = None
    start = 0
    turns: list[ChatTurn] = []
    for row in iter_split_rows(dataset_dir, "train", columns=("session_id", "start", "window", "turns")):
        session = session_of(row["session_id"])
        window = [ChatTurn(turn["speaker"], tuple(turn["messages"])) for turn in row["turns"]]
        if session == current and row["window"] > 0:  # a session's windows are consecutive rows, in order
            stitch_windows(turns, window)
            continue
        if current is not None:
            yield current, start, turns
        current, start, turns = session, int(row["start"]), window
    if current is not None:
        yield current, start, turns


def _train_exchanges(dataset_dir: Path) -> Iterator[tuple[str, int, Exchange]]:
    """``(session, start, exchange)`` for every exchange of the train split, in dataset order."""
    for session, start, turns in _train_sessions(dataset_dir):
        for exchange in exchanges_of(turns):
            yield session, start, exchange


def _insert_exchanges(connection: sqlite3.Connection, exchanges: Iterable[tuple[str, int, Exchange]]) -> int:
    """Insert in batches of ``BATCH_ROWS``; returns how many exchanges there were."""
    count = 0
    batch: list[tuple[Any, ...]] = []
    texts: list[tuple[int, str]] = []
    for session, start, exchange in exchanges:
        count += 1
        context = exchange.context
        batch.append(
            (
                count,
                session,
                start,
                exchange.reply.speaker,
                exchange.incoming.speaker,
                json.dumps(exchange.incoming.messages, ensure_ascii=False),
                json.dumps(exchange.reply.messages, ensure_ascii=False),
                context.speaker if context is not None else None,
                json.dumps(context.messages, ensure_ascii=False) if context is not None else None,
            )
        )
        texts.append((count, "\n".join(exchange.incoming.messages)))
        if len(batch) >= BATCH_ROWS:
            connection.executemany(_INSERT_EXCHANGE, batch)
            connection.executemany(_INSERT_TEXT, texts)
            batch, texts = [], []
    connection.executemany(_INSERT_EXCHANGE, batch)
    connection.executemany(_INSERT_TEXT, texts)
    return count
