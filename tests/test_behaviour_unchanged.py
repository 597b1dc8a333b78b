"""Refactors change no output: prepare's datasets for the sample export, byte for byte, at three settings.

The expected fingerprints in ``tests/data/prepare_fingerprints.json`` were recorded before the code moved into its
per-stage packages (issue 9). Every byte of each split's Arrow file, each split's ``datasets`` fingerprint and the
manifest (without the output path, which is the test's own) must stay what they were. They were re-recorded once
since, deliberately, when the dataset format became ``doppel-dataset/2`` (message lines that start like ``>>> `` are
neutralised): only the manifest's ``format`` changed, no byte of the data. A deliberate change re-records them::

    DOPPEL_RECORD_GOLDEN=1 .venv/bin/python -m pytest tests/test_behaviour_unchanged.py
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from doppel.cli import main

GOLDEN = Path(__file__).parent / "data" / "prepare_fingerprints.json"
RECORD = os.environ.get("DOPPEL_RECORD_GOLDEN") == "1"

CASES: dict[str, tuple[int, list[str]]] = {
    "seed-1-defaults": (1, []),
    "seed-2-long-gaps-small-windows-no-scrub": (
        2,
        ["--session-gap", "2h", "--max-tokens", "256", "--no-scrub", "--val-fraction", "0.1"],
    ),
    "seed-3-more-chat-types-forwarded-overlap": (
        3,
        [
            "--chat-types",
            "personal_chat,private_group,private_supergroup,public_supergroup",
            "--keep-forwarded",
            "--max-tokens",
            "128",
            "--overlap-tokens",
            "16",
            "--since",
            "2020-01-01",
        ],
    ),
}


def fingerprints(dataset: Path) -> dict[str, Any]:
    """What identifies a dataset's content: each file's sha256, each split's fingerprint, the manifest."""
    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    manifest["settings"].pop("out")
    files = {
        str(path.relative_to(dataset)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(dataset.rglob("*"))
        if path.is_file() and path.name not in ("manifest.json", "report.txt")
    }
    splits = {
        split: json.loads((dataset / split / "state.json").read_text(encoding="utf-8"))["_fingerprint"]
        for split in ("train", "validation")
    }
    return {"files": files, "fingerprints": splits, "manifest": manifest}


def run_quietly(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_prepare_writes_the_recorded_dataset(case: str, tmp_path: Path) -> None:
    seed, flags = CASES[case]
    export = tmp_path / "export.json"
    run_quietly(["sample-export", str(export), "--seed", str(seed), "--messages", "6000"])
    run_quietly(["prepare", str(export), "--out", str(tmp_path / "dataset"), "--quiet", *flags])
    found = fingerprints(tmp_path / "dataset")
    recorded = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.exists() else {}
    if RECORD:
        recorded[case] = found
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        pytest.skip(f"recorded {case} into {GOLDEN.name}")
    assert case in recorded, f"no recorded fingerprints for {case}: record them (see the module docstring)"
    assert found == recorded[case]
