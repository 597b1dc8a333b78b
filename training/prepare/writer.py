"""Write dataset rows straight into the on-disk layout of ``datasets.DatasetDict.save_to_disk``.

Rows stream into one Arrow IPC stream file per split, in batches, with plain pyarrow: importing
``datasets`` (and pandas under it) would cost more memory than the whole prepare run is allowed.
The result loads with ``datasets.load_from_disk(DIR)``; tests pin that it does, with our features.
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import xxhash

from doppel.formats.dataset import ARROW_SCHEMA, FEATURES_DICT, SPLITS
from training.prepare.rows import RowChunk

DATA_FILE = "data-00000-of-00001.arrow"
ROWS_PER_BATCH = 256
BATCH_TEXT_BYTES = 8 << 20
# pyarrow's default allocator (mimalloc) keeps freed memory around; the system allocator hands it back,
# which keeps prepare's peak RSS ~15 MB lower on a million messages.
_POOL = pa.system_memory_pool()


class SplitWriter:
    """Appends row chunks to one split; call :meth:`close` (or use ``with``) to write its metadata.

    Rows arrive as :class:`training.prepare.rows.RowChunk` (raw Arrow buffers, rendered in other
    processes), become Arrow arrays without a copy, and leave as batches of at least ``ROWS_PER_BATCH``
    rows (or ``BATCH_TEXT_BYTES`` of text): chunks are grouped in arrival order, so the file depends only
    on the sequence of chunks.
    """

    def __init__(self, directory: Path, split: str) -> None:
        self.directory = directory
        self.split = split
        directory.mkdir(parents=True, exist_ok=True)
        self._sink = pa.OSFile(str(directory / DATA_FILE), "wb")
        self._writer = pa.ipc.new_stream(self._sink, ARROW_SCHEMA)
        # datasets' own fingerprints are xxhash too; sha256 of ~50 MB of text would cost prepare 0.04 s.
        self._fingerprint = xxhash.xxh3_128()
        self.rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = self._pending_bytes = 0

    def add_chunk(self, chunk: RowChunk) -> None:
        # datasets' fingerprint only has to change when the content does: every row's id and text, in order.
        self._fingerprint.update(chunk.session_id_data)
        self._fingerprint.update(chunk.text_data)
        self._pending.append(chunk_to_batch(chunk))
        self.rows += chunk.rows
        self._pending_rows += chunk.rows
        self._pending_bytes += len(chunk.text_data)
        if self._pending_rows >= ROWS_PER_BATCH or self._pending_bytes >= BATCH_TEXT_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        pending = self._pending
        batch = pending[0] if len(pending) == 1 else pa.concat_batches(pending, memory_pool=_POOL)
        self._writer.write_batch(batch)
        self._pending = []
        self._pending_rows = self._pending_bytes = 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        self._sink.close()
        state = {
            "_data_files": [{"filename": DATA_FILE}],
            "_fingerprint": self._fingerprint.hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        info = {"citation": "", "description": "", "features": FEATURES_DICT, "homepage": "", "license": ""}
        (self.directory / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
        (self.directory / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_dataset_dict_index(directory: Path) -> None:
    """The top-level file that makes ``directory`` a DatasetDict."""
    (directory / "dataset_dict.json").write_text(json.dumps({"splits": list(SPLITS)}), encoding="utf-8")


def chunk_to_batch(chunk: RowChunk) -> pa.RecordBatch:
    """A chunk's buffers as one Arrow batch of the dataset's schema, without copying them.

    Only ``from_buffers``, never ``pa.array``: converting Python objects makes pyarrow import pandas,
    which costs prepare ~50 MB of its memory budget and 0.15 s.
    """
    rows = chunk.rows
    turns = len(chunk.turn_message_offsets) // 4 - 1
    messages = len(chunk.message_offsets) // 4 - 1
    messages_type = _TURN_TYPE.field("messages").type
    turn_struct = pa.Array.from_buffers(
        _TURN_TYPE,
        turns,
        [None],
        children=[
            _strings(turns, chunk.speaker_offsets, chunk.speaker_data),
            pa.Array.from_buffers(
                messages_type,
                turns,
                [None, pa.py_buffer(chunk.turn_message_offsets)],
                children=[_strings(messages, chunk.message_offsets, chunk.message_data)],
            ),
        ],
    )
    columns = {
        "session_id": _strings(rows, chunk.session_id_offsets, chunk.session_id_data),
        "chat_id": _numbers(pa.int64(), rows, (array("q", [chunk.chat_id]) * rows).tobytes()),
        "chat_type": _repeated(chunk.chat_type.encode(), rows),
        "start": _numbers(pa.int64(), rows, chunk.starts),
        "end": _numbers(pa.int64(), rows, chunk.ends),
        "window": _numbers(pa.int32(), rows, chunk.windows),
        "turns": pa.Array.from_buffers(
            ARROW_SCHEMA.field("turns").type, rows, [None, pa.py_buffer(chunk.turn_offsets)], children=[turn_struct]
        ),
        "text": _strings(rows, chunk.text_offsets, chunk.text_data),
        "n_tokens": _numbers(pa.int32(), rows, chunk.n_tokens),
    }
    return pa.RecordBatch.from_arrays([columns[name] for name in ARROW_SCHEMA.names], schema=ARROW_SCHEMA)


_TURN_TYPE = ARROW_SCHEMA.field("turns").type.value_type


def _strings(length: int, offsets: bytes, data: bytes) -> pa.Array:
    return pa.Array.from_buffers(pa.string(), length, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _repeated(value: bytes, count: int) -> pa.Array:
    """``count`` copies of one string."""
    return _strings(count, array("i", [len(value) * index for index in range(count + 1)]).tobytes(), value * count)


def _numbers(kind: pa.DataType, length: int, values: bytes) -> pa.Array:
    return pa.Array.from_buffers(kind, length, [None, pa.py_buffer(values)])
