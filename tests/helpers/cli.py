"""Running ``doppel STAGE ...`` in-process as a user would, and the house rule for bad input: one line, exit 2."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from doppel.cli import main


@dataclass(frozen=True)
class CliRun:
    """What one ``doppel`` command did: its stage, exit code and standard error."""

    stage: str
    code: int
    err: str


def run_cli(stage: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> CliRun:
    """``doppel STAGE *argv`` through the real entry point; what fixtures printed before is dropped."""
    capsys.readouterr()
    code = main([stage, *argv])
    return CliRun(stage, code, capsys.readouterr().err)


def assert_one_line_error(run: CliRun, fragment: str) -> None:
    """Bad input: exit code 2 and a single ``doppel STAGE: error: ...`` line that contains ``fragment``."""
    lines = run.err.strip().splitlines()
    assert run.code == 2, run.err
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"doppel {run.stage}: error: "), lines[0]
    assert fragment in lines[0], lines[0]
