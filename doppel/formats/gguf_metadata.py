"""doppel's own keys in a GGUF file: what ``chat`` and ``serve`` need to use the model, under ``doppel.``.

One exported file is a complete, movable model: it says who the owner is, which personas it can speak as
(with their message counts), how messages are formatted, how it was trained and from what. The keys::

    doppel.format                     "doppel-gguf/1"
    doppel.role                       "model" (merged), "adapter" (LoRA GGUF) or "base" (the base an adapter needs)
    doppel.version                    the doppel version that exported it
    doppel.converter                  the llama.cpp (llama-cpp-python) version that converted it
    doppel.owner.id / .name           the account owner
    doppel.personas.id / .name        parallel arrays, one entry per speaker of the dataset, with
    doppel.personas.messages / .turns   their message and turn counts (and .is_owner)
    doppel.message_format.template    "chatml"; .prefix ">>> " (each message's first line); .roles "speaker names"
    doppel.loss_scope / doppel.method how the run was trained
    doppel.dataset.sha256             hash of the Telegram export the dataset came from
    doppel.base.source / .sha256      the base model
    doppel.run.step                   optimizer steps trained
    doppel.adapter.base_file          (adapters) the base GGUF file beside it

Writing rewrites the file (GGUF keeps its keys before the tensor data) with gguf-py, the way llama.cpp's
``gguf_new_metadata.py`` does, and also points ``eos``/``eot`` at ``<|im_end|>`` so llama.cpp stops there.
Inspect a file with::

    python -m doppel.formats.gguf_metadata MODEL.gguf
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import struct
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "doppel."
FORMAT = "doppel-gguf/1"
RECORD_LISTS = ("personas",)
"""Lists of records, stored as one array per field (``doppel.personas.name`` ...) since GGUF arrays are flat."""

EOS_KEY = "tokenizer.ggml.eos_token_id"
EOT_KEY = "tokenizer.ggml.eot_token_id"


def doppel_fields(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The flat ``doppel.*`` keys of a nested metadata dict (``None`` values are left out)."""
    return dict(_flatten(metadata, PREFIX.rstrip(".")))


def _flatten(value: Any, key: str) -> Iterator[tuple[str, Any]]:
    if value is None:
        return
    if isinstance(value, Mapping):
        for name, item in value.items():
            if "." in str(name):
                raise ValueError(f"metadata key {name!r}: dots separate levels and cannot be part of a name")
            yield from _flatten(item, f"{key}.{name}")
    elif key.removeprefix(PREFIX) in RECORD_LISTS:
        records = list(value)
        fields = list(records[0]) if records else []
        for field in fields:
            yield f"{key}.{field}", [record[field] for record in records]
    else:
        yield key, value


def write_with_metadata(src: Path, dst: Path, metadata: Mapping[str, Any], stop_token_id: int | None = None) -> None:
    """Copy GGUF ``src`` to ``dst`` with doppel's keys set (old ``doppel.*`` keys dropped).

    ``stop_token_id`` (the id of ``<|im_end|>``) becomes both ``eos`` and ``eot``: llama.cpp ends generation
    at either, and a base whose eos is ``<|endoftext|>`` would otherwise run past the end of a turn.
    """
    import gguf

    new_fields = {key: _typed(key, value) for key, value in doppel_fields(metadata).items()}
    if stop_token_id is not None:
        for key in (EOS_KEY, EOT_KEY):
            new_fields[key] = (int(stop_token_id), gguf.GGUFValueType.UINT32, None)
    with _quiet_gguf_writer():
        copy_with_fields(gguf.GGUFReader(src), dst, new_fields)


def copy_with_fields(reader: Any, dst: Path, new_fields: dict[str, tuple[Any, Any, Any]]) -> None:
    """Copy the GGUF behind ``reader`` to ``dst``, tensors untouched, with ``new_fields`` (key: (value, type,
    array item type)) replacing or adding keys; doppel's old keys are dropped."""
    import gguf

    architecture = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if architecture is None:
        raise ValueError(f"{reader.data.filename}: no general.architecture; not a model or adapter GGUF")
    writer = gguf.GGUFWriter(dst, arch=str(architecture.contents()), endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = int(alignment.contents())
    for field in reader.fields.values():
        # GGUF.* are the reader's virtual fields; the writer adds general.architecture itself.
        if field.name.startswith(("GGUF.", PREFIX)) or field.name == gguf.Keys.General.ARCHITECTURE:
            continue
        if field.name in new_fields:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for key, (value, value_type, sub_type) in new_fields.items():
        writer.add_key_value(key, value, value_type, sub_type=sub_type)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()


@contextlib.contextmanager
def _quiet_gguf_writer() -> Iterator[None]:
    """gguf-py announces every file it writes at INFO, naming our scratch paths: keep that for --verbose."""
    logger = logging.getLogger("gguf")
    level = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _typed(key: str, value: Any) -> tuple[Any, Any, Any]:
    """(value, GGUF type, array element type) for a metadata value."""
    import gguf

    kind = gguf.GGUFValueType
    if isinstance(value, (list, tuple)):
        items = list(value)
        element = _typed(key, items[0])[1] if items else kind.STRING
        if any(_typed(key, item)[1] != element for item in items):
            raise ValueError(f"{key}: a GGUF array holds one type of value")
        return items, kind.ARRAY, element
    if isinstance(value, bool):
        return value, kind.BOOL, None
    if isinstance(value, int):
        if value < 0:
            return value, kind.INT64, None
        return value, kind.UINT64, None
    if isinstance(value, float):
        return value, kind.FLOAT64, None
    if isinstance(value, str):
        return value, kind.STRING, None
    raise TypeError(f"{key}: cannot store a {type(value).__name__} in GGUF metadata")


def read_doppel_metadata(path: str | Path) -> dict[str, Any]:
    """doppel's keys of a GGUF file as the nested dict they were written from; ``{}`` if it has none."""
    return unflatten(read_fields(path, lambda key: key.startswith(PREFIX)))


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`doppel_fields`."""
    nested: dict[str, Any] = {}
    records: dict[str, dict[str, list[Any]]] = {}
    for key, value in flat.items():
        path = key.removeprefix(PREFIX).split(".")
        if path[0] in RECORD_LISTS and len(path) == 2:
            records.setdefault(path[0], {})[path[1]] = list(value)
            continue
        node = nested
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    for name, arrays in records.items():
        length = len(next(iter(arrays.values())))
        nested[name] = [{field: values[index] for field, values in arrays.items()} for index in range(length)]
    return nested


def stop_token_ids(path: str | Path) -> dict[str, int | None]:
    """The file's ``eos`` and ``eot`` token ids (None where unset)."""
    fields = read_fields(path, lambda key: key in (EOS_KEY, EOT_KEY))
    return {"eos": fields.get(EOS_KEY), "eot": fields.get(EOT_KEY)}


# GGUF value types (gguf.GGUFValueType) and their struct formats. Reading the few keys we need this way takes
# milliseconds; gguf.GGUFReader builds an object for each of a vocabulary's ~100k strings, which takes seconds.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_fields(path: str | Path, wanted: Callable[[str], bool]) -> dict[str, Any]:
    """The metadata keys of a GGUF file for which ``wanted(key)`` holds, decoded; the rest are skipped."""
    with Path(path).open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
        if buffer[:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        (version,) = struct.unpack_from("<I", buffer, 4)
        order = "<" if version < 0x10000 else ">"  # a big-endian file's version reads byte-swapped
        _tensors, count = struct.unpack_from(f"{order}QQ", buffer, 8)
        offset = 24
        fields: dict[str, Any] = {}
        for _ in range(count):
            key, offset = _read_value(buffer, offset, _STRING, order, keep=True)
            (value_type,) = struct.unpack_from(f"{order}I", buffer, offset)
            keep = wanted(key)
            value, offset = _read_value(buffer, offset + 4, value_type, order, keep)
            if keep:
                fields[key] = value
        return fields


def _read_value(buffer: mmap.mmap, offset: int, value_type: int, order: str, keep: bool) -> tuple[Any, int]:
    """(the value, or None when not kept; the offset after it)."""
    if value_type == _STRING:
        (length,) = struct.unpack_from(f"{order}Q", buffer, offset)
        start = offset + 8
        return (buffer[start : start + length].decode("utf-8", "replace") if keep else None), start + length
    if value_type == _ARRAY:
        element_type, length = struct.unpack_from(f"{order}IQ", buffer, offset)
        offset += 12
        if element_type in _SCALARS:
            code = _SCALARS[element_type]
            values = list(struct.unpack_from(f"{order}{length}{code}", buffer, offset)) if keep else None
            return values, offset + length * struct.calcsize(code)
        items = []
        for _ in range(length):
            item, offset = _read_value(buffer, offset, element_type, order, keep)
            if keep:
                items.append(item)
        return (items if keep else None), offset
    if value_type not in _SCALARS:
        raise ValueError(f"unknown GGUF value type {value_type} at byte {offset}")
    code = _SCALARS[value_type]
    return struct.unpack_from(f"{order}{code}", buffer, offset)[0], offset + struct.calcsize(code)


def main(argv: list[str] | None = None) -> int:
    """Print a GGUF file's doppel metadata as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m doppel.formats.gguf_metadata MODEL.gguf", file=sys.stderr)
        return 2
    print(json.dumps(read_doppel_metadata(args[0]), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
