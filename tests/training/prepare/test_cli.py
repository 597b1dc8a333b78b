"""``doppel prepare`` as a user runs it: exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from doppel.cli import main
from tests.helpers.telegram import OWNER_ID, chat, dialogue, full_export, write
from training.prepare.config import parse_duration

GOOD = full_export(
    [
        chat(
            10,
            "Anna",
            dialogue(
                [
                    (0, "Anna", 2, "hi"),
                    (9, "Olga", OWNER_ID, "hey"),
                    (86400, "Anna", 2, "again"),
                    (86409, "Olga", OWNER_ID, "yes"),
                ]
            ),
        )
    ]
)


def test_success_prints_the_report_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export = write(tmp_path / "result.json", GOOD)
    assert main(["prepare", str(export), "--out", str(tmp_path / "ds"), "--session-gap", "45m"]) == 0
    out = capsys.readouterr().out
    assert "messages read" in out and f"wrote {tmp_path / 'ds'}" in out
    assert (tmp_path / "ds" / "manifest.json").exists()


def test_settings_come_from_a_config_file_and_flags_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = write(tmp_path / "result.json", GOOD)
    config = tmp_path / "prepare.yaml"
    config.write_text(
        f"exports: [{export}]\nout: {tmp_path / 'from-file'}\nsession_gap: 45m\nsince: 2020-01-01\n"
        "chat_types: personal_chat,private_group\nscrub: false\nmax_tokens: 64\n",
        encoding="utf-8",
    )
    assert main(["prepare", "--config", str(config), "--quiet", "--max-tokens", "128"]) == 0
    settings = json.loads((tmp_path / "from-file" / "manifest.json").read_text(encoding="utf-8"))["settings"]
    assert settings["session_gap"] == 45 * 60 and settings["since"] == 1577836800
    assert settings["chat_types"] == ["personal_chat", "private_group"] and settings["scrub"] is False
    assert settings["max_tokens"] == 128  # the flag wins over the file
    config.write_text("session_gap: soon\n", encoding="utf-8")
    assert main(["prepare", str(export), "--out", str(tmp_path / "x"), "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (
        "doppel prepare: error: --session-gap: not a duration: 'soon' (try 30m, 2h, 90s)"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"{not json", "invalid JSON"),
        (b'{"chats": {"list": [{"name": "A", "id": 1, "messages": [{"id": 1,', "truncated JSON"),
        (b'{"hello": "world"}', "not a Telegram export"),
        (b'{"chats": {"list": [{"name": "A", "id": 1, "messages": "nope"}]}}', "'messages' is not a list"),
        (
            b'{"chats": {"list": [{"name": "A", "type": "personal_chat", "id": 1, '
            b'"messages": [{"id": 1, "text": "caf\xe9"}]}]}}',
            "not valid UTF-8",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    export = tmp_path / "export.json"
    export.write_bytes(content)
    assert main(["prepare", str(export), "--out", str(tmp_path / "ds")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doppel prepare: error: ") and str(export) in lines[0]
    assert expected in lines[0] and "Traceback" not in captured.err
    assert not (tmp_path / "ds").exists()


def test_wrong_types_inside_messages_are_skipped_and_counted_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = GOOD | {}
    document["chats"]["list"][0]["messages"].insert(1, {"id": "x", "type": "message", "text": 5, "date_unixtime": None})
    export = write(tmp_path / "result.json", document)
    assert main(["prepare", str(export), "--out", str(tmp_path / "ds"), "--quiet"]) == 0
    assert "malformed" in (tmp_path / "ds" / "report.txt").read_text(encoding="utf-8")


def test_missing_export_and_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prepare", str(tmp_path / "nope.json"), "--out", str(tmp_path / "ds")]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path), "--out", str(tmp_path / "ds")]) == 2
    assert "a folder without result.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["prepare", "x.json", "--out", "y", "--session-gap", "soon"])
    assert caught.value.code == 2


def test_durations() -> None:
    assert [parse_duration(text) for text in ("90s", "30m", "2h", "1d", "45")] == [
        90,
        1800,
        7200,
        86400,
        2700,
    ]


def test_the_installed_command_runs_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[]", encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "doppel.cli",
            "prepare",
            str(tmp_path / "bad.json"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"doppel prepare: error: {tmp_path / 'bad.json'}: not a Telegram export (expected a JSON object at the top)"
    ]


def test_help_lists_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "prepare" in out and "sample-export" in out


def test_a_named_stage_imports_only_its_own_module() -> None:
    # prepare forks workers: every module the parent holds is counted again in each of them.
    code = (
        "import sys\n"
        "from doppel.cli import main\n"
        "try:\n"
        "    main(['prepare', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('training.prepare.cli', 'training.train.cli', 'training.telegram.sample.cli',"
        " 'training.export.cli', 'yaml') if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--out" in done.stdout
    assert done.stderr.strip() == "['training.prepare.cli']"
