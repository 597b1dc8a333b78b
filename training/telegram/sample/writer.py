"""Stream the export out in Telegram's layout, message by message, with keys in Telegram's order.

A message sits at nesting depth 5, its keys at 6, nested values deeper. :class:`Chat` writes one chat's
messages; :class:`Output` buffers the file and counts what is written.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import IO, Any

from training.telegram.sample.clock import END_UNIXTIME, local_time
from training.telegram.sample.entities import Text

#: What comes before each key of a message after the first.
NEXT_KEY = ",\n      "


def nested_json(value: Any, depth: int) -> str:
    # json's indent=1 layout is Telegram's; only the continuation lines need the outer depth.
    return json.dumps(value, ensure_ascii=False, indent=1).replace("\n", "\n" + " " * depth)


def key_value(key: str, raw: str | int) -> str:
    """One more key of a message; ``raw`` is JSON already."""
    return f'{NEXT_KEY}"{key}": {raw}'


def _text_fields(text: Text) -> str:
    """``text`` and ``text_entities``, the one spelling out the other."""
    if isinstance(text, str):
        if not text:
            return NEXT_KEY + '"text": ""' + NEXT_KEY + '"text_entities": []'
        quoted = encode_basestring(text)
        return (
            NEXT_KEY
            + '"text": '
            + quoted
            + NEXT_KEY
            + '"text_entities": [\n       {\n        "type": "plain",\n        "text": '
            + quoted
            + "\n       }\n      ]"
        )
    entities = [part if isinstance(part, dict) else {"type": "plain", "text": part} for part in text]
    return NEXT_KEY + '"text": ' + nested_json(text, 6) + NEXT_KEY + '"text_entities": ' + nested_json(entities, 6)


class Peer:
    """A message author as Telegram writes it: ``from`` (maybe null) and ``from_id``."""

    __slots__ = ("_actor", "_actor_old", "_from", "_from_old", "from_id", "name", "old_name", "renamed_at")

    def __init__(self, name: str | None, from_id: str, old_name: str | None = None) -> None:
        self.name = name
        self.old_name = old_name
        self.from_id = from_id
        self.renamed_at = END_UNIXTIME - 100 * 86400
        quoted = "null" if name is None else encode_basestring(name)
        self._from = f'{NEXT_KEY}"from": {quoted}{NEXT_KEY}"from_id": "{from_id}"'
        self._actor = f'{NEXT_KEY}"actor": {quoted}{NEXT_KEY}"actor_id": "{from_id}"'
        if old_name is not None:
            quoted_old = encode_basestring(old_name)
            self._from_old = f'{NEXT_KEY}"from": {quoted_old}{NEXT_KEY}"from_id": "{from_id}"'
            self._actor_old = f'{NEXT_KEY}"actor": {quoted_old}{NEXT_KEY}"actor_id": "{from_id}"'
        else:
            self._from_old = self._from
            self._actor_old = self._actor

    def name_at(self, ts: int) -> str | None:
        """The display name at ``ts`` (before or after a rename)."""
        return self.old_name if self.old_name is not None and ts < self.renamed_at else self.name

    def from_fields(self, ts: int) -> str:
        """``from`` and ``from_id`` of an ordinary message at ``ts``."""
        return self._from_old if ts < self.renamed_at else self._from

    def actor_fields(self, ts: int) -> str:
        """``actor`` and ``actor_id`` of a service message at ``ts``."""
        return self._actor_old if ts < self.renamed_at else self._actor


def user(name: str | None, user_id: int, old_name: str | None = None) -> Peer:
    """A user account as a message author."""
    return Peer(name, f"user{user_id}", old_name)


class Output:
    """The output file, written in blocks so that the export never sits in memory."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.buffer: list[str] = []
        self.messages = 0
        self.per_speaker: Counter[str] = Counter()
        self.file_counter = itertools.count(1)

    def write(self, block: str) -> None:
        """Append ``block`` to the file (buffered)."""
        self.buffer.append(block)
        if len(self.buffer) >= 4096:
            self.flush()

    def flush(self) -> None:
        """Write out what is buffered."""
        self.handle.write("".join(self.buffer))
        self.buffer.clear()


class Chat:
    """One chat being written: its clock, its message ids, and the serializer for its messages."""

    def __init__(self, out: Output, rng: random.Random, *, first_id: int, skip_rate: float, skip_max: int) -> None:
        self.out = out
        self.rng = rng
        self.t = END_UNIXTIME
        self.last_id = first_id - 1
        self.skip_rate = skip_rate
        self.skip_max = skip_max
        self.recent: list[int] = []
        self.first = True
        self.count = 0

    def _next_id(self) -> int:
        # Private chats share one id counter per account and messages get deleted, so ids have holes.
        step = 1 + (self.rng.randint(1, self.skip_max) if self.rng.random() < self.skip_rate else 0)
        self.last_id += step
        return self.last_id

    def _emit(self, mid: int, body: str) -> int:
        self.out.write(("\n     {" if self.first else ",\n     {") + body + "\n     }")
        self.first = False
        self.count += 1
        self.out.messages += 1
        self.recent.append(mid)
        if len(self.recent) > 32:
            del self.recent[:16]
        return mid

    def head(self, mid: int, kind: str, ts: int) -> str:
        """The four keys every message opens with."""
        return (
            f'\n      "id": {mid}{NEXT_KEY}"type": "{kind}"{NEXT_KEY}"date": "{local_time(ts)}"'
            f'{NEXT_KEY}"date_unixtime": "{ts}"'
        )

    def say(
        self,
        peer: Peer,
        text: Text,
        *,
        media: str = "",
        edited_after: int = 0,
        author: str = "",
        forwarded_from: str = "",
        saved_from: str = "",
        reply_to: int = 0,
        reply_peer: str = "",
        via_bot: str = "",
        reactions: list[dict[str, Any]] | None = None,
    ) -> int:
        """Write one ordinary message; ``forwarded_from`` and ``saved_from`` are raw JSON (a name or null)."""
        mid = self._next_id()
        ts = self.t
        parts = [self.head(mid, "message", ts)]
        if edited_after:
            edited = ts + edited_after
            parts.append(f'{NEXT_KEY}"edited": "{local_time(edited)}"{NEXT_KEY}"edited_unixtime": "{edited}"')
        parts.append(peer.from_fields(ts))
        if author:
            parts.append(key_value("author", encode_basestring(author)))
        if forwarded_from:
            parts.append(key_value("forwarded_from", forwarded_from))
        if saved_from:
            parts.append(key_value("saved_from", saved_from))
        if reply_to:
            parts.append(key_value("reply_to_message_id", reply_to))
            if reply_peer:
                parts.append(key_value("reply_to_peer_id", f'"{reply_peer}"'))
        if via_bot:
            parts.append(key_value("via_bot", encode_basestring(via_bot)))
        parts.append(media)
        parts.append(_text_fields(text))
        if reactions:
            parts.append(key_value("reactions", nested_json(reactions, 6)))
        self.out.per_speaker[peer.from_id] += 1
        return self._emit(mid, "".join(parts))

    def service(self, actor: Peer, action: str, fields: Sequence[tuple[str, Any]] = ()) -> int:
        """Write one service message: ``actor``/``actor_id``/``action`` instead of ``from``; empty text."""
        mid = self._next_id()
        ts = self.t
        parts = [self.head(mid, "service", ts), actor.actor_fields(ts), key_value("action", f'"{action}"')]
        parts.extend(key_value(key, nested_json(value, 6)) for key, value in fields)
        parts.append(NEXT_KEY + '"text": ""' + NEXT_KEY + '"text_entities": []')
        return self._emit(mid, "".join(parts))

    def reply_target(self) -> int:
        """The id of a recent message to reply to (0: none yet)."""
        return self.rng.choice(self.recent) if self.recent else 0
