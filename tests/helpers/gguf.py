"""What the export fixtures hand the tests: the files an export wrote and its summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Exported:
    """The files an export wrote and its summary (as an object, or as ``doppel export`` printed it)."""

    out: Path
    base: Path | None
    summary: Any
    stdout: str
