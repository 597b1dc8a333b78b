"""Length-prefixed msgpack records: how prepare's passes and processes hand each other data on disk.

    handle.write(frame(encoder.encode(value)))
    for value in read_framed(path, Kind): ...

Each record is a little-endian uint32 length, then that many bytes of msgpack. Files are read back one
record at a time, so memory holds one record however long the file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

_LENGTH = struct.Struct("<I")


def frame(payload: bytes) -> bytes:
    """One record: ``payload`` (encoded msgpack) behind its length."""
    return _LENGTH.pack(len(payload)) + payload


def read_framed(path: Path, kind: Any) -> Iterator[Any]:
    """Every record of ``path``, decoded as ``kind`` (a type msgspec understands), in order."""
    decoder = msgspec.msgpack.Decoder(kind)
    with path.open("rb") as handle:
        while header := handle.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            yield decoder.decode(handle.read(length))
