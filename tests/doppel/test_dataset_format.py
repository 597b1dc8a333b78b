"""The pyarrow-only split reader: the same rows as ``datasets.load_from_disk``, and one-line errors for damage."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest

from doppel.chatml import Turn
from doppel.errors import InputError
from doppel.formats.dataset import FEATURES_DICT, iter_split_rows, split_fingerprint
from tests.helpers.datasets import make_session, write_dataset

DATA_FILE = "data-00000-of-00001.arrow"


def small_dataset(path: Path) -> Path:
    rng = random.Random(5)
    train = [make_session(rng, turns=rng.randint(2, 6)) for _ in range(40)]
    validation = [make_session(rng) for _ in range(7)]
    train.append([Turn("Anna", ("ünïcödé 🙂", "line one\nline two")), Turn("Me", ("",))])
    return write_dataset(path, train, validation)


@pytest.mark.parametrize("split", ["train", "validation"])
def test_rows_are_exactly_what_datasets_loads(tmp_path: Path, split: str) -> None:
    path = small_dataset(tmp_path / "dataset")
    expected = datasets.load_from_disk(str(path))[split].to_list()
    assert len(expected) > 5
    assert list(iter_split_rows(path, split)) == expected
    assert list(iter_split_rows(path, split, columns=("turns", "session_id"))) == [
        {"turns": row["turns"], "session_id": row["session_id"]} for row in expected
    ]


def test_rows_of_what_prepare_writes_are_what_datasets_loads(tmp_path: Path) -> None:
    # prepare writes the Arrow stream itself (training.prepare.writer), in batches, with windows of long sessions.
    from training.prepare import PrepareConfig, prepare
    from training.telegram.sample import write_sample_export

    export = write_sample_export(tmp_path / "result.json", seed=4, messages=3000).path
    out = prepare(PrepareConfig(exports=(export,), out=tmp_path / "dataset", progress=False, max_tokens=96)).out
    loaded = datasets.load_from_disk(str(out))
    for split in ("train", "validation"):
        assert list(iter_split_rows(out, split)) == loaded[split].to_list()
    assert len(loaded["train"]) > 256  # more than one batch
    assert any(row["window"] > 0 for row in loaded["train"])


def test_a_split_of_several_files_reads_them_in_order(tmp_path: Path) -> None:
    rows = list(iter_split_rows(small_dataset(tmp_path / "one"), "train"))
    split = tmp_path / "sharded" / "train"
    features = datasets.Features.from_dict(FEATURES_DICT)
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(split), num_shards=3)
    assert len(json.loads((split / "state.json").read_text(encoding="utf-8"))["_data_files"]) == 3
    assert list(iter_split_rows(tmp_path / "sharded", "train")) == rows


def test_the_fingerprint_is_the_one_in_the_state(tmp_path: Path) -> None:
    path = small_dataset(tmp_path / "dataset")
    state = json.loads((path / "train" / "state.json").read_text(encoding="utf-8"))
    assert split_fingerprint(path, "train") == state["_fingerprint"]


def _truncate(fraction: float) -> Callable[[Path], Path]:
    def damage(path: Path) -> Path:
        file = path / "train" / DATA_FILE
        data = file.read_bytes()
        file.write_bytes(data[: int(len(data) * fraction)])
        return file

    return damage


def _drop_end_marker(path: Path) -> Path:
    # Cut exactly between batches: pyarrow reads what is there without complaint; the missing marker tells.
    file = path / "train" / DATA_FILE
    file.write_bytes(file.read_bytes()[:-8])
    return file


def _garbage(path: Path) -> Path:
    file = path / "train" / DATA_FILE
    file.write_bytes(b"not arrow at all\n" * 10)
    return file


def _empty(path: Path) -> Path:
    file = path / "train" / DATA_FILE
    file.write_bytes(b"")
    return file


def _no_data_file(path: Path) -> Path:
    file = path / "train" / DATA_FILE
    file.unlink()
    return file


def _no_state(path: Path) -> Path:
    file = path / "train" / "state.json"
    file.unlink()
    return file


def _bad_state(path: Path) -> Path:
    file = path / "train" / "state.json"
    file.write_text("{ not json", encoding="utf-8")
    return file


def _state_without_files(path: Path) -> Path:
    file = path / "train" / "state.json"
    file.write_text(json.dumps({"_fingerprint": "abc"}), encoding="utf-8")
    return file


@pytest.mark.parametrize(
    "damage",
    [
        _truncate(0.5),
        _truncate(0.05),
        _drop_end_marker,
        _garbage,
        _empty,
        _no_data_file,
        _no_state,
        _bad_state,
        _state_without_files,
    ],
    ids=lambda damage: getattr(damage, "__name__", "truncate").strip("_"),
)
def test_a_damaged_split_is_one_line_naming_the_file(tmp_path: Path, damage: Callable[[Path], Path]) -> None:
    path = small_dataset(tmp_path / "dataset")
    file = damage(path)
    with pytest.raises(InputError) as caught:
        list(iter_split_rows(path, "train"))
    message = str(caught.value)
    assert message.startswith(f"{file}: ")
    assert "\n" not in message


def test_asking_for_a_column_the_split_lacks_is_an_input_error(tmp_path: Path) -> None:
    path = small_dataset(tmp_path / "dataset")
    with pytest.raises(InputError, match=r"data-00000-of-00001\.arrow: damaged data file \(no column speaker\)"):
        list(iter_split_rows(path, "train", columns=("turns", "speaker")))


def test_a_missing_split_names_its_state_file(tmp_path: Path) -> None:
    path = small_dataset(tmp_path / "dataset")
    with pytest.raises(InputError, match=r"test/state\.json: the test split is missing"):
        list(iter_split_rows(path, "test"))


def test_reading_a_split_imports_neither_datasets_nor_pandas(tmp_path: Path) -> None:
    path = small_dataset(tmp_path / "dataset")
    code = (
        "import sys\nfrom pathlib import Path\nfrom doppel.formats.dataset import iter_split_rows\n"
        f"rows = list(iter_split_rows(Path({str(path)!r}), 'train'))\n"
        "print(len(rows), 'datasets' in sys.modules, 'pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["41", "False", "False"]
