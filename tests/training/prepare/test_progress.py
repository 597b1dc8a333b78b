"""prepare's progress bar: the export's bytes, the messages read so far and their rate, never any text."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

import training.prepare.reader
from training.prepare import PrepareConfig, prepare
from training.prepare.progress import PrepareProgress


def test_the_bar_shows_bytes_messages_and_messages_per_second() -> None:
    stream = io.StringIO()
    with PrepareProgress(10_000_000, enabled=True, stream=stream) as progress:
        time.sleep(0.25)  # the bar redraws at most every 0.2 s
        progress.show(position=5_000_000, messages=12_345)
    shown = stream.getvalue()
    assert "prepare" in shown and "5.00M/10.0M" in shown
    assert "12,345 messages" in shown and "messages/s" in shown


def test_a_quiet_run_shows_nothing() -> None:
    stream = io.StringIO()
    with PrepareProgress(100, enabled=False, stream=stream) as progress:
        progress.show(position=50, messages=7)
    assert stream.getvalue() == "" and progress.messages == 7


@pytest.mark.parametrize(("exports", "workers"), [(1, 1), (1, 2), (2, 1)])
def test_the_bar_ends_at_every_byte_and_every_message_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exports: int, workers: int
) -> None:
    from training.telegram.sample import write_sample_export

    shown: list[tuple[int, int]] = []

    class Recorder(PrepareProgress):
        def show(self, position: int, messages: int) -> None:
            shown.append((position, messages))
            super().show(position, messages)

    monkeypatch.setattr(training.prepare.reader, "PrepareProgress", Recorder)
    paths = tuple(
        write_sample_export(tmp_path / f"result-{index}.json", seed=4, messages=3000 + 500 * index).path
        for index in range(exports)
    )
    result = prepare(PrepareConfig(exports=paths, out=tmp_path / "out", progress=False, workers=workers))
    counts: dict[str, Any] = result.manifest["counts"]
    assert len(shown) > 1
    assert [position for position, _ in shown] == sorted(position for position, _ in shown)
    assert [messages for _, messages in shown] == sorted(messages for _, messages in shown)
    total_bytes = sum(path.stat().st_size for path in paths)
    assert shown[-1] == (total_bytes, counts["messages_read"] + counts["messages_in_skipped_chats"])
