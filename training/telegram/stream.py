"""Stream a Telegram Desktop JSON export chat by chat, message batch by message batch, in flat memory.

    from training.telegram.stream import ExportStream
    with ExportStream(Path("result.json")) as export:
        for chat in export.chats():          # ChatHeader, in file order
            for batch in chat.batches():     # lists of RawMessage, ~1 MB of JSON each
                ...

Accepts a full-account export (``personal_information`` + ``chats.list`` + ``left_chats.list``) and a
single-chat export (the chat object at the root). Nothing but the current ~1 MB window of the file and
one batch of messages is held in memory, whatever the export's size.

Why not ijson: building every message as a dict in ijson's C backend alone costs half of a plain
``json.load`` of the file. msgspec decodes a batch of messages straight into slim structs (skipping
``text_entities`` and every key we do not read) about five times faster. The price is framing: we must
hand msgspec complete JSON values. The document skeleton (keys, chat headers) is walked here with a
tiny pull parser whose values msgspec decodes; a message array is cut into batches at candidate
boundaries ``}, {"id":``. A candidate that falls inside a string or a nested object can only produce
an unterminated value, which msgspec rejects, and we move on to the next candidate; msgspec's
"trailing characters" error marks where the array really ends. So msgspec validates every cut.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import msgspec

from doppel.errors import InputError, where

READ_CHUNK = 1 << 19  # bytes read from the file at a time
BATCH_BYTES = 1 << 19  # aim for message batches of about this much JSON (bigger: no faster, more memory)
_MAX_SCALAR_WINDOW = 1 << 30

_WHITESPACE = re.compile(rb"[ \t\r\n]*")
# Telegram Desktop writes "id" first in every message; any match is still validated by msgspec.
_MESSAGE_CUT = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*(\{)[ \t\r\n]*\"id\"[ \t\r\n]*:")
_ANY_CUT = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*(\{)")
_TRAILING_AT = re.compile(r"trailing characters \(byte (\d+)\)")

CHAT_SECTIONS = ("chats", "left_chats")


class RawMessage(msgspec.Struct, frozen=True, gc=False):
    """The keys of a Telegram message that doppel reads; all others are skipped while decoding.

    Types are ``Any`` on purpose: a malformed value must not fail the whole batch, it is judged per
    message in :mod:`training.telegram.messages`. ``UNSET`` tells a missing key from an explicit null.
    """

    id: Any = None
    type: Any = None
    date: Any = None
    date_unixtime: Any = None
    sender: Any = msgspec.field(default=msgspec.UNSET, name="from")
    from_id: Any = None
    forwarded_from: Any = msgspec.UNSET
    saved_from: Any = msgspec.UNSET
    via_bot: Any = msgspec.UNSET
    text: Any = ""
    media_type: Any = None
    sticker_emoji: Any = None
    photo: Any = None
    file: Any = None
    poll: Any = None
    contact_information: Any = None
    location_information: Any = None
    place_name: Any = None
    game_title: Any = None
    invoice_information: Any = None
    dice: Any = None
    action: Any = None


_BATCH_DECODER = msgspec.json.Decoder(list[RawMessage])


class _Skipped(msgspec.Struct, gc=False):
    """A message of a chat nobody asked for: decoded for validation, every key discarded."""


_SKIP_DECODER = msgspec.json.Decoder(list[_Skipped])
_ANY_DECODER = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class ChatHeader:
    """What a chat object says about itself before its messages (Telegram writes name, type, id first)."""

    index: int
    section: str  # "chats", "left_chats", or "root" for a single-chat export
    id: Any
    name: Any
    type: Any

    def describe(self) -> str:
        name = self.name if isinstance(self.name, str) else "(no name)"
        return f"{name!r} (id {self.id})"


@dataclass
class ExportChat:
    """One chat of the export; iterate :meth:`batches` before asking for the next chat, or it is skipped."""

    header: ChatHeader
    _stream: ExportStream
    _consumed: bool = field(default=False, repr=False)

    def batches(self) -> Iterator[list[RawMessage]]:
        if self._consumed:
            return
        self._consumed = True
        yield from self._stream._message_batches(self.header, _BATCH_DECODER)

    def skip(self) -> int:
        """Pass over the chat's messages without building them; returns how many there were."""
        if self._consumed:
            return 0
        self._consumed = True
        return sum(len(batch) for batch in self._stream._message_batches(self.header, _SKIP_DECODER))


class _Buffer:
    """A sliding window over a binary file: ``data[pos:]`` is what has not been consumed yet."""

    def __init__(self, handle: BinaryIO, hasher: Any) -> None:
        self.handle = handle
        self.hasher = hasher
        self.data = b""
        self.pos = 0
        self.offset = 0  # file offset of data[0]
        self.eof = False

    def available(self) -> int:
        return len(self.data) - self.pos

    def fill(self, at_least: int = 1) -> bool:
        """Make ``at_least`` unconsumed bytes available if the file has them; False at end of file."""
        if self.available() >= at_least:
            return True
        if self.eof:
            return False
        want = max(READ_CHUNK, at_least - self.available())
        chunk = self.handle.read(want)
        if self.hasher is not None:
            self.hasher.update(chunk)
        self.offset += self.pos
        self.data = self.data[self.pos :] + chunk
        self.pos = 0
        if len(chunk) < want:
            self.eof = True
        return self.available() >= at_least

    def skip_whitespace(self) -> None:
        while True:
            self.pos = _WHITESPACE.match(self.data, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.data) or not self.fill():
                return

    def peek(self) -> int | None:
        self.skip_whitespace()
        return self.data[self.pos] if self.pos < len(self.data) else None


class ExportStream:
    """Opens one export file; use as a context manager. Also hashes the bytes as it reads them."""

    def __init__(self, path: Path, *, hash_bytes: bool = True) -> None:
        """``hash_bytes=False`` skips hashing (``sha256`` then stays empty): a reader that only needs a part."""
        self.path = path
        self._hash_bytes = hash_bytes
        self.kind: str | None = None  # "full" or "single", known once chats() starts
        self.personal_information: dict[str, Any] | None = None
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        self._handle: BinaryIO | None = None
        self._buffer: _Buffer | None = None

    def __enter__(self) -> ExportStream:
        try:
            self._handle = self.path.open("rb")
        except OSError as error:
            raise InputError(f"{self.path}: cannot open ({error.strerror or error})") from None
        self._buffer = _Buffer(self._handle, self.sha256 if self._hash_bytes else None)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.close()

    @property
    def position(self) -> int:
        """Bytes consumed so far (for progress bars and error reports; 0 before the file is opened)."""
        buffer = self._buffer
        return 0 if buffer is None else buffer.offset + buffer.pos

    # -- the document skeleton -------------------------------------------------------------------

    def chats(self) -> Iterator[ExportChat]:
        """Every chat in file order: ``chats.list``, then ``left_chats.list`` (full export), or the root chat."""
        buffer = self._require_buffer()
        first = buffer.peek()
        if first is None:
            raise InputError(f"{self.path}: the file is empty")
        if first != ord("{"):
            raise InputError(f"{self.path}: not a Telegram export (expected a JSON object at the top)")
        buffer.pos += 1
        root_keys: dict[str, Any] = {}
        index = 0
        for key in self._object_keys("the top-level object"):
            if key in CHAT_SECTIONS:
                self.kind = "full"
                for chat in self._chat_section(key, index):
                    index += 1
                    yield chat
            elif key == "messages":
                self.kind = "single"
                header = ChatHeader(0, "root", root_keys.get("id"), root_keys.get("name"), root_keys.get("type"))
                yield from self._messages_of(header)
                index += 1
            else:
                value = self._value(f"the value of {key!r}")
                if key == "personal_information":
                    if not isinstance(value, dict):
                        raise InputError(f"{self.path}: personal_information is not an object")
                    self.personal_information = value
                    self.kind = "full"
                elif key in ("name", "type", "id"):
                    root_keys[key] = value
        if buffer.peek() is not None:
            raise InputError(f"{self.path}: unexpected data after the end of the export")
        if self.kind is None:
            raise InputError(
                f"{self.path}: not a Telegram export (no 'chats' list and no 'messages'; "
                "export from Telegram Desktop with Settings > Advanced > Export Telegram data, format JSON)"
            )

    def _chat_section(self, section: str, start_index: int) -> Iterator[ExportChat]:
        if self._require_buffer().peek() != ord("{"):
            raise InputError(f"{self.path}: {section} is not an object")
        self._require_buffer().pos += 1
        index = start_index
        for key in self._object_keys(section):
            if key != "list":
                self._value(f"{section}.{key}")
                continue
            for _ in self._array_items(f"{section}.list"):
                if self._require_buffer().peek() != ord("{"):
                    raise InputError(f"{self.path}: {section}.list item {index - start_index} is not a chat object")
                self._require_buffer().pos += 1
                yield from self._chat_object(section, index)
                index += 1

    def _chat_object(self, section: str, index: int) -> Iterator[ExportChat]:
        seen: dict[str, Any] = {}
        for key in self._object_keys(f"{section}.list item {index}"):
            if key == "messages":
                header = ChatHeader(index, section, seen.get("id"), seen.get("name"), seen.get("type"))
                yield from self._messages_of(header)
            else:
                seen[key] = self._value(f"chat {index}: {key!r}")

    def _messages_of(self, header: ChatHeader) -> Iterator[ExportChat]:
        buffer = self._require_buffer()
        if buffer.peek() != ord("["):
            raise InputError(f"{where(self.path, header.describe())}: 'messages' is not a list")
        buffer.pos += 1
        chat = ExportChat(header, self)
        yield chat
        chat.skip()

    def _members(self, closing: str, what: str) -> Iterator[None]:
        """Positions the buffer on each member of the object or array whose opening bracket was consumed.

        The caller consumes each member; this checks the commas between them and the closing bracket.
        """
        buffer = self._require_buffer()
        first = True
        while True:
            char = buffer.peek()
            if char == ord(closing):
                buffer.pos += 1
                return
            if not first:
                if char != ord(","):
                    self._malformed(what)
                buffer.pos += 1
                buffer.peek()
            first = False
            yield

    def _object_keys(self, what: str) -> Iterator[str]:
        """Keys of the object whose '{' was just consumed; the caller consumes each value."""
        buffer = self._require_buffer()
        for _ in self._members("}", what):
            key = self._value(what)
            if not isinstance(key, str) or buffer.peek() != ord(":"):
                self._malformed(what)
            buffer.pos += 1
            yield key

    def _array_items(self, what: str) -> Iterator[None]:
        """Positions the buffer on each item of the array at point; the caller consumes the item."""
        buffer = self._require_buffer()
        if buffer.peek() != ord("["):
            raise InputError(f"{self.path}: {what} is not a list")
        buffer.pos += 1
        yield from self._members("]", what)

    def _value(self, what: str) -> Any:
        """Decode the one JSON value at point, however long, and consume it."""
        buffer = self._require_buffer()
        if buffer.peek() is None:
            self._truncated(what)
        window = 4096
        while True:
            buffer.fill(window)
            chunk = buffer.data[buffer.pos : buffer.pos + window]
            try:
                value = _ANY_DECODER.decode(chunk)
            except msgspec.DecodeError as error:
                if _is_utf8_error(error):
                    self._not_utf8(what)
                trailing = _TRAILING_AT.search(str(error))
                if trailing:
                    end = int(trailing.group(1)) - 1
                    value = self._decode_or_fail(chunk[:end], what)
                    buffer.pos += end
                    return value
                if "truncated" not in str(error) or (buffer.eof and window >= buffer.available()):
                    if "truncated" in str(error):
                        self._truncated(what)
                    self._malformed(what)
            except UnicodeDecodeError:
                self._not_utf8(what)
            else:
                # A number cut by the window also decodes: only the end of the file proves it complete.
                if buffer.eof and window >= buffer.available():
                    buffer.pos += len(chunk)
                    return value
            if window > _MAX_SCALAR_WINDOW:
                self._malformed(what)
            window *= 4

    def _decode_or_fail(self, chunk: bytes, what: str) -> Any:
        try:
            return _ANY_DECODER.decode(chunk)
        except UnicodeDecodeError:
            self._not_utf8(what)
        except msgspec.DecodeError as error:
            if _is_utf8_error(error):
                self._not_utf8(what)
            self._malformed(what)

    # -- message arrays --------------------------------------------------------------------------

    def _message_batches(self, header: ChatHeader, decoder: msgspec.json.Decoder) -> Iterator[list[Any]]:
        """Batches of the message array whose '[' was just consumed, up to and including its ']'."""
        buffer = self._require_buffer()
        first = True
        while True:
            char = buffer.peek()
            if char == ord("]"):
                buffer.pos += 1
                return
            if char is None:
                self._truncated(f"chat {header.describe()}")
            if not first:  # a batch ended at a candidate cut, so a ',' must follow
                if char != ord(","):
                    self._malformed(f"chat {header.describe()}")
                buffer.pos += 1
                buffer.peek()
            first = False
            batch, done = self._next_batch(header, decoder)
            yield batch
            if done:
                return

    def _next_batch(self, header: ChatHeader, decoder: msgspec.json.Decoder) -> tuple[list[Any], bool]:
        """Decode messages from point up to a verified cut. Returns the batch and whether the array ended."""
        buffer = self._require_buffer()
        pattern = _MESSAGE_CUT
        search_from = BATCH_BYTES
        while True:
            buffer.fill(search_from + BATCH_BYTES)
            start = buffer.pos
            cut = pattern.search(buffer.data, start + min(search_from, buffer.available()))
            end = cut.start() + 1 if cut else len(buffer.data)
            if cut is None and not buffer.eof:
                if buffer.available() > 64 * BATCH_BYTES and pattern is _MESSAGE_CUT:
                    pattern = _ANY_CUT  # messages not written "id" first: any object boundary will do
                search_from = max(BATCH_BYTES, buffer.available() - 256)  # a cut may straddle the old end
                buffer.fill(buffer.available() + READ_CHUNK)
                continue
            segment = b"[" + buffer.data[start:end] + b"]"
            try:
                batch = _decode_batch(segment, decoder)
            except UnicodeDecodeError:
                self._locate_bad_message(header, end, what="is not valid UTF-8")
            except msgspec.DecodeError as error:
                if _is_utf8_error(error):
                    self._locate_bad_message(header, end, what="is not valid UTF-8")
                trailing = _TRAILING_AT.search(str(error))
                if trailing:
                    # The array closed inside this segment: everything before its ']' is one last batch.
                    stop = int(trailing.group(1)) - 1
                    batch = _decode_batch(segment[:stop], decoder)
                    buffer.pos = start + stop - 1
                    return batch, True
                if "truncated" in str(error) and cut is not None:
                    search_from = cut.end() - start  # the cut fell inside a value: try the next one
                    continue
                if "truncated" in str(error) or (cut is None and _ends_early(buffer.data[start:end])):
                    self._locate_bad_message(header, end, what="is cut off where the file ends (truncated JSON)")
                self._locate_bad_message(header, end, what="is malformed JSON")
            else:
                buffer.pos = end
                return batch, False

    def _locate_bad_message(self, header: ChatHeader, end: int, what: str) -> None:
        """Walk the failed segment one message at a time to name the message that is broken."""
        buffer = self._require_buffer()
        end_offset = buffer.offset + end  # fill() may shift the window while we walk
        last_good: Any = None
        while self.position < end_offset:
            try:
                value = self._value(f"chat {header.describe()}")
            except InputError:
                break
            if isinstance(value, dict):
                last_good = value.get("id", last_good)
            if buffer.peek() != ord(","):
                break
            buffer.pos += 1
        after = f"the message after id {last_good}" if last_good is not None else "its first message"
        raise InputError(f"{where(self.path, header.describe())}: {after} {what} (byte {self.position})")

    # -- errors ----------------------------------------------------------------------------------

    def _require_buffer(self) -> _Buffer:
        if self._buffer is None:
            raise RuntimeError("ExportStream must be used as a context manager")
        return self._buffer

    def _malformed(self, what: str) -> None:
        raise InputError(f"{self.path}: invalid JSON in {what} (byte {self.position})")

    def _truncated(self, what: str) -> None:
        raise InputError(f"{self.path}: the file ends in the middle of {what} (truncated JSON, byte {self.position})")

    def _not_utf8(self, what: str) -> None:
        raise InputError(f"{self.path}: {what} is not valid UTF-8 text (byte {self.position})")


def _decode_batch(segment: bytes, decoder: msgspec.json.Decoder) -> list[Any]:
    """Decode a bracketed run of messages; a msgspec.DecodeError means the JSON itself is broken.

    An element that is not a message object does not fail the batch: it becomes a blank message (id
    None, no type), which is counted as malformed downstream instead of stopping the run.
    """
    try:
        return decoder.decode(segment)
    except msgspec.ValidationError:
        items = _ANY_DECODER.decode(segment)  # raises DecodeError if the JSON is broken after all
    if decoder is _SKIP_DECODER:
        return [None] * len(items) if isinstance(items, list) else []
    result: list[Any] = []
    for item in items if isinstance(items, list) else []:
        try:
            result.append(msgspec.convert(item, RawMessage))
        except msgspec.ValidationError:
            result.append(RawMessage(id=item.get("id") if isinstance(item, dict) else None))
    return result


def _is_utf8_error(error: msgspec.DecodeError) -> bool:
    """msgspec before 0.23 raised UnicodeDecodeError on invalid UTF-8; since then, this DecodeError."""
    return "UTF-8" in str(error)


def _ends_early(tail: bytes) -> bool:
    """Whether the rest of the file is a message array that simply stops (a truncated download)."""
    try:
        _ANY_DECODER.decode(b"[" + tail)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        return "truncated" in str(error)
    return False
