"""No training at all: SmolLM2 itself plays the owner from their own past exchanges, retrieved from the dataset.

The dataset is what `doppel prepare` writes for the synthetic sample export; the model is the untouched base.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from doppel.cli import main
from doppel.paths import ENV_VAR
from serving.engine.config import EngineConfig
from serving.engine.factory import open_engine
from serving.engine.types import ChatTurn, ReplyRequest


@pytest.fixture(scope="module")
def sample_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["sample-export", str(root / "export.json"), "--seed", "7", "--messages", "3000"]) == 0
        assert main(["prepare", str(root / "export.json"), "--out", str(root / "dataset"), "--quiet"]) == 0
    return root / "dataset"


async def test_the_base_model_answers_as_the_owner_with_their_own_exchanges_in_context(
    smollm2_gguf: Path, sample_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "home"))
    config = EngineConfig(model=smollm2_gguf, dataset=sample_dataset, temperature=0, max_tokens=32, context_size=1024)
    engine = open_engine(config)
    async with engine:
        assert engine.memory is not None  # auto: on, because the base model was never fine-tuned
        owner = engine.personas.owner.name
        partner = engine.personas.partner_for(owner)
        request = ReplyRequest("t", (ChatTurn(partner, ("are you coming tonight?",)),), owner, partner)
        examples = engine.memory.examples(owner, "are you coming tonight?", k=3)
        prompt, _ = engine.prompt_for(request)
        assert examples and all(example[-1].speaker == owner for example in examples)
        assert all(f"<|im_start|>{owner}\n>>> {example[-1].messages[0]}" in prompt.text for example in examples)
        reply = await engine.reply(request)
    assert reply.messages and not any("<|im_" in message for message in reply.messages)


async def test_memory_stays_off_for_a_fine_tuned_model_unless_asked(
    persona_gguf: Path, sample_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "home"))
    engine = open_engine(EngineConfig(model=persona_gguf, dataset=sample_dataset, context_size=512))
    assert engine.memory is None and engine.personas.owner.name == "Olga"  # the model's own personas win
    forced = open_engine(EngineConfig(model=persona_gguf, dataset=sample_dataset, memory="on", context_size=512))
    assert forced.memory is not None
    for opened in (engine, forced):
        await opened.aclose()
