"""The prepared-dataset directory: its schema, its manifest, and the one loader later stages use.

``doppel prepare`` writes::

    DIR/
      manifest.json        who the owner is, the persona list, settings, source hash, counts
      report.txt           the human-readable summary that prepare printed
      train/ validation/   a Hugging Face DatasetDict (save_to_disk), one row per session window

Each row: ``session_id``, ``chat_id``, ``chat_type``, ``start``/``end`` (unix seconds), ``window``
(0 for an unsplit session), ``turns`` (a list of ``{speaker, messages}``), ``text`` (the ChatML
rendering of the turns) and ``n_tokens`` (the estimate used for windowing).

The runtime reads a split without the ``datasets`` package (which it does not install), straight from the
Arrow files that ``DIR/<split>/state.json`` lists::

    for row in iter_split_rows(Path("dataset"), "train", columns=("session_id", "turns")):
        ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from doppel.errors import InputError

if TYPE_CHECKING:
    import datasets

MANIFEST_NAME = "manifest.json"
REPORT_NAME = "report.txt"
DATASET_FORMAT = "doppel-dataset/2"
# /1: written before message text starting a line with ">>> " was neutralised (doppel.chatml.neutralise); such a
# line reads back as a message of its own there. Everything else is the same, so both load.
READABLE_FORMATS = ("doppel-dataset/1", DATASET_FORMAT)
SPLITS = ("train", "validation")
STATE_NAME = "state.json"  # datasets' per-split state: the data files and the content fingerprint
# What pyarrow writes when a stream is closed properly; a file cut off between two batches reads without an
# error up to the cut, so the marker is the only sign that rows are missing.
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def _value(dtype: str) -> dict[str, str]:
    return {"dtype": dtype, "_type": "Value"}


# The schema in datasets' own serialised form. prepare writes it without importing `datasets` (whose
# import alone costs ~140 MB of RSS); tests check it equals what `datasets` itself would write.
FEATURES_DICT: dict[str, Any] = {
    "session_id": _value("string"),
    "chat_id": _value("int64"),
    "chat_type": _value("string"),
    "start": _value("int64"),
    "end": _value("int64"),
    "window": _value("int32"),
    "turns": {
        "feature": {"speaker": _value("string"), "messages": {"feature": _value("string"), "_type": "List"}},
        "_type": "List",
    },
    "text": _value("string"),
    "n_tokens": _value("int32"),
}

ARROW_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("chat_id", pa.int64()),
        ("chat_type", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("window", pa.int32()),
        ("turns", pa.list_(pa.struct([("speaker", pa.string()), ("messages", pa.list_(pa.string()))]))),
        ("text", pa.string()),
        ("n_tokens", pa.int32()),
    ],
    metadata={"huggingface": json.dumps({"info": {"features": FEATURES_DICT}})},
)


def __getattr__(name: str) -> Any:
    if name == "FEATURES":  # datasets.Features, built on first use so importing this module stays light
        import datasets

        return datasets.Features.from_dict(FEATURES_DICT)
    raise AttributeError(name)


@dataclass(frozen=True)
class PreparedDataset:
    """A loaded dataset directory: the splits and the manifest that describes them."""

    path: Path
    splits: datasets.DatasetDict
    manifest: dict[str, Any]

    @property
    def owner(self) -> str:
        return str(self.manifest["owner"]["name"])

    @property
    def speakers(self) -> list[dict[str, Any]]:
        return list(self.manifest["speakers"])


def load_manifest(path: Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a dataset directory; an :class:`InputError` names what is wrong."""
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise InputError(f"{path}: no such dataset directory (create one with `doppel prepare`)")
    if not manifest_path.is_file():
        raise InputError(f"{path}: not a doppel dataset, {MANIFEST_NAME} is missing (create one with `doppel prepare`)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{manifest_path}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in READABLE_FORMATS:
        raise InputError(f"{manifest_path}: not a doppel dataset manifest ({' or '.join(READABLE_FORMATS)})")
    return manifest


def load_prepared(path: str | Path) -> PreparedDataset:
    """Load a directory written by ``doppel prepare``."""
    import datasets

    path = Path(path)
    manifest = load_manifest(path)
    try:
        splits = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{path}: the dataset files are missing or damaged ({error})") from None
    if not isinstance(splits, datasets.DatasetDict) or set(splits) != set(SPLITS):
        raise InputError(f"{path}: expected the splits {', '.join(SPLITS)}")
    return PreparedDataset(path=path, splits=splits, manifest=manifest)


def split_state(path: Path, split: str) -> dict[str, Any]:
    """``DIR/<split>/state.json``, checked: it lists the split's Arrow files and has a content fingerprint."""
    state_path = path / split / STATE_NAME
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{state_path}: the {split} split is missing (prepare the dataset again)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{state_path}: unreadable split state ({_one_line(error)})") from None
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("filename"), str) for entry in files
    ):
        raise InputError(f"{state_path}: damaged split state (no list of data files)")
    if not isinstance(state.get("_fingerprint"), str):
        raise InputError(f"{state_path}: damaged split state (no fingerprint)")
    return state


def split_fingerprint(path: Path, split: str) -> str:
    """The split's content fingerprint: it changes whenever a row's id or text does."""
    return str(split_state(path, split)["_fingerprint"])


def iter_split_rows(path: Path, split: str, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """The rows of one split in order, as ``datasets.load_from_disk(path)[split]`` gives them, one batch in memory.

    ``columns`` limits each row to those columns (all by default). Only pyarrow: ``datasets`` is not needed. A
    missing or damaged split (state or data file) is an :class:`InputError` naming the file, raised when the
    damage is reached.
    """
    directory = path / split
    for entry in split_state(path, split)["_data_files"]:
        yield from _file_rows(directory / entry["filename"], columns)


def _file_rows(file: Path, columns: Sequence[str] | None) -> Iterator[dict[str, Any]]:
    # `datasets` writes (and `doppel prepare` imitates) Arrow IPC *stream* files, not the random-access format.
    try:
        source = pa.memory_map(str(file))
    except FileNotFoundError:
        raise InputError(f"{file}: the data file is missing (prepare the dataset again)") from None
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"{file}: unreadable data file ({_one_line(error)})") from None
    with source:
        try:
            reader = pa.ipc.open_stream(source)
        except (OSError, pa.ArrowException) as error:
            raise InputError(f"{file}: damaged data file ({_one_line(error)})") from None
        selected = list(columns) if columns is not None else None
        if selected is not None:
            missing = [name for name in selected if name not in reader.schema.names]
            if missing:
                raise InputError(f"{file}: damaged data file (no column {', '.join(missing)})")
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (OSError, pa.ArrowException) as error:
                raise InputError(f"{file}: damaged data file ({_one_line(error)})") from None
            if selected is not None:
                batch = batch.select(selected)
            yield from batch.to_pylist()
        size = source.size()
        source.seek(max(size - len(_END_OF_STREAM), 0))
        if source.read(len(_END_OF_STREAM)) != _END_OF_STREAM:
            raise InputError(f"{file}: damaged data file (it ends before the end of the stream)")


def _one_line(error: BaseException) -> str:
    """An error's text on one line: pyarrow's can span several, and a bad input is reported in one."""
    return " ".join(str(error).split()) or type(error).__name__
