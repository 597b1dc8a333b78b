"""Refactors change no output: the doppel metadata of the test export is what it was before the code moved.

``tests/data/export_metadata.json`` was recorded before issue 9 moved the export stage into ``training/export/``.
Re-record a deliberate change with ``DOPPEL_RECORD_GOLDEN=1`` (see ``tests/test_behaviour_unchanged.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from doppel.formats.gguf_metadata import read_doppel_metadata
from tests.helpers.gguf import Exported

GOLDEN = Path(__file__).parents[2] / "data" / "export_metadata.json"


@pytest.mark.slow
def test_the_merged_export_carries_the_recorded_metadata(merged_export: Exported) -> None:
    found = read_doppel_metadata(merged_export.out)
    if os.environ.get("DOPPEL_RECORD_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        pytest.skip(f"recorded {GOLDEN.name}")
    assert found == json.loads(GOLDEN.read_text(encoding="utf-8"))
