"""``doppel chat`` as a user runs it: a scripted conversation through a pipe, the commands, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serving.chat.session import ChatSession, MessageDisplay
from serving.engine.engine import Engine
from serving.engine.personas import PersonaList
from tests.helpers.cli import assert_one_line_error, run_cli
from tests.helpers.engines import ScriptedBackend
from tests.helpers.fake_completions import serve_completions
from tests.serving.conftest import PERSONAS

GREEDY = ["--temperature", "0", "--max-tokens", "24", "--threads", "2", "--context-size", "512"]


def chat(argv: list[str], stdin: str, home: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "doppel.cli", "chat", *argv]
    env = {"DOPPEL_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120, env=env, check=False)


def test_a_piped_conversation_prints_one_reply_message_a_line(persona_gguf: Path, tmp_path: Path) -> None:
    done = chat(
        [str(persona_gguf), *GREEDY], "hi!\nare you free tonight?\n/persona anna\n/as Bob Smith\nlunch?\n", tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.strip() for line in lines)
    assert not any("<|im_" in line or line.startswith(">>>") for line in lines)
    assert "now playing Anna" in done.stderr and "you are now Bob Smith" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_same_script_at_temperature_0_gives_the_same_replies(persona_gguf: Path, tmp_path: Path) -> None:
    first = chat([str(persona_gguf), *GREEDY], "hi!\nwhat are you doing?\n", tmp_path)
    second = chat([str(persona_gguf), *GREEDY], "hi!\nwhat are you doing?\n", tmp_path)
    assert first.returncode == second.returncode == 0 and first.stdout == second.stdout


def test_bad_input_is_one_line_and_exit_2(
    persona_gguf: Path, smollm2_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line_error(run_cli("chat", [], capsys), "MODEL.gguf is required (or --engine-url URL)")
    assert_one_line_error(run_cli("chat", [str(tmp_path / "missing.gguf")], capsys), "missing.gguf: no such file")
    (tmp_path / "notes.gguf").write_text("hello", encoding="utf-8")
    assert_one_line_error(run_cli("chat", [str(tmp_path / "notes.gguf")], capsys), "not a GGUF file")
    assert_one_line_error(run_cli("chat", [str(smollm2_gguf)], capsys), "has no doppel metadata")
    assert_one_line_error(run_cli("chat", [str(persona_gguf), "--persona", "Ana"], capsys), "unknown persona 'Ana' in ")
    assert_one_line_error(run_cli("chat", [str(persona_gguf), "--dataset", str(tmp_path)], capsys), "not a doppel")
    assert_one_line_error(run_cli("chat", ["--engine-url", "http://127.0.0.1:9"], capsys), "give --dataset DIR")
    assert_one_line_error(
        run_cli("chat", [str(persona_gguf), "--max-tokens", "600", "--context-size", "1024"], capsys),
        "--max-tokens 600 leaves no room for the conversation in --context-size 1024",
    )
    assert_one_line_error(
        run_cli("chat", [str(persona_gguf), "--engine-url", "http://127.0.0.1:9"], capsys),
        "cannot reach the engine at http://127.0.0.1:9",
    )


def test_a_remote_engine_serves_the_chat(persona_gguf: Path, tmp_path: Path) -> None:
    with serve_completions(deltas=[" sure", ", noon", "\n>>> ", "see you"]) as server:
        done = chat([str(persona_gguf), "--engine-url", server.url, "--persona", "Anna"], "lunch?\n", tmp_path)
        prompts = [body["prompt"] for body in server.bodies("/v1/completions")]
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["sure, noon", "see you"]
    assert prompts == ["<|im_start|>Olga\n>>> lunch?<|im_end|>\n<|im_start|>Anna\n>>>"]


async def test_commands_switch_personas_and_forget_the_conversation() -> None:
    engine = Engine(ScriptedBackend(answer=" sure"), PersonaList.from_records(PERSONAS, "test"))
    async with engine:
        session = ChatSession(engine, "Olga", "Anna")
        assert await session.send("lunch?") == ["sure"]
        assert [turn.speaker for turn in session.turns] == ["Anna", "Olga"]
        assert session.command("/persona bob smith") == "now playing Bob Smith"
        assert session.command("/as Olga") == "you are now Olga"
        await session.send("and you?")
        assert [turn.speaker for turn in session.turns][-2:] == ["Olga", "Bob Smith"]
        assert session.command("/reset") == "the conversation is forgotten" and session.turns == []
        assert session.command("/quit") is None
        with pytest.raises(Exception, match="unknown persona"):
            session.command("/persona Nobody")


def test_the_display_shows_each_message_on_its_own_line_however_the_text_is_cut() -> None:
    body = " hi there\n>>> see you at 7\n>>> ok"
    for size in (1, 2, 3, 5, 50):
        display = MessageDisplay()
        shown = "".join(display.feed(body[i : i + size]) for i in range(0, len(body), size)) + display.finish()
        assert shown == "hi there\nsee you at 7\nok"
    display = MessageDisplay()
    assert display.feed(" done\n>>") + display.finish() == "done"
