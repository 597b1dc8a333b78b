"""Real training on CPU with SmolLM2: a LoRA run learns and writes its run directory, resume is exact, full
fine-tuning and added chat tokens work, and every kind of bad input is a one-line error with exit code 2."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors import safe_open

from doppel.chatml import IM_END, IM_START
from doppel.cli import main
from doppel.formats.dataset import load_prepared
from doppel.formats.run_dir import RUN_FORMAT
from tests.helpers.cli import assert_one_line_error, run_cli
from tests.helpers.datasets import FRIENDS, OWNER, make_session
from training.train.base_model import DEFAULT_BASE, file_sha256, packaged_file
from training.train.config import TrainConfig
from training.train.labels import SessionTokenizer
from training.train.loop import train
from training.train.loss import packed_loss
from training.train.packing import collate, plan_epoch

REPO = Path(__file__).resolve().parents[3]
FAST = ["--seq-len", "256", "--learning-rate", "1e-3", "--warmup-ratio", "0"]


def metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def validation_loss(model: Any, tokenizer: Any, dataset_dir: Path, run_json: dict[str, Any], seq_len: int) -> float:
    """The validation loss of a loaded model, computed the way training computes it."""
    from training.train.labels import LossScope

    dataset = load_prepared(dataset_dir)
    split = dataset.splits["validation"]
    sessions = SessionTokenizer(tokenizer, LossScope.parse(run_json["loss_scope"]), dataset.owner).many(split["turns"])
    batches = plan_epoch([len(session) for session in sessions], seq_len, 1, 0, 0)
    total = count = 0.0
    model.eval()
    with torch.no_grad():
        for batch_rows in batches:
            batch = collate(sessions, batch_rows, tokenizer.pad_token_id or 0)
            total += float(packed_loss(model, batch, "cpu", num_items=1.0))
            count += batch.n_supervised
    return total / count


def test_lora_run_learns_and_writes_the_run_directory(
    smollm2_env: Path, tiny_dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    argv = ["train", str(tiny_dataset_dir), "--out", str(run), "--max-steps", "6", *FAST]
    assert main([*argv, "--eval-every", "6", "--save-every", "3", "--keep-checkpoints", "1"]) == 0
    assert "trained lora for 6 steps" in capsys.readouterr().out

    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    gguf = packaged_file(DEFAULT_BASE)
    assert gguf is not None
    assert info["format"] == RUN_FORMAT
    assert (info["method"], info["loss_scope"], info["finished"], info["step"]) == ("lora", "all", True, 6)
    assert info["base"]["source"] == DEFAULT_BASE
    assert info["base"]["sha256"] == file_sha256(gguf)
    assert Path(info["base"]["hf_dir"]).is_relative_to(smollm2_env / "cache")
    assert info["dataset"] == json.loads((tiny_dataset_dir / "manifest.json").read_text(encoding="utf-8"))
    assert info["dataset_path"] == str(tiny_dataset_dir.resolve())
    assert info["added_tokens"] == []
    assert info["program"]["name"] == "doppel"

    config = TrainConfig.load_yaml(run / "config.yaml")
    assert config == TrainConfig(
        dataset=tiny_dataset_dir, out=run, max_steps=6, seq_len=256, learning_rate=1e-3, warmup_ratio=0,
        eval_every=6, save_every=3, keep_checkpoints=1,
    ).resolved()  # fmt: skip

    records = metrics(run)
    val = [record["val_loss"] for record in records if "val_loss" in record]
    steps = [record for record in records if "loss" in record]
    assert [record["step"] for record in steps] == [1, 2, 3, 4, 5, 6]
    assert all(record["tokens"] > 0 and record["tokens_per_s"] > 0 and record["step_time_s"] > 0 for record in steps)
    assert steps[0]["lr"] == pytest.approx(1e-3)
    assert len(val) == 2
    assert val[1] < val[0] - 0.3, f"validation loss did not drop: {val}"
    assert info["best_val_loss"] == pytest.approx(min(val))
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["step-6"]
    assert not list(run.glob(".tmp-*"))

    model_dir = run / "model"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
        p.name for p in model_dir.iterdir()
    }
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(info["base"]["hf_dir"], dtype=torch.float32)
    before = validation_loss(base, tokenizer, tiny_dataset_dir, info, 256)
    tuned = PeftModel.from_pretrained(base, model_dir)
    after = validation_loss(tuned, tokenizer, tiny_dataset_dir, info, 256)
    assert before == pytest.approx(val[0], abs=1e-4)
    assert after == pytest.approx(val[1], abs=1e-4)  # the saved adapter is the model that was validated


def test_resume_continues_from_the_same_step_with_the_same_next_batch(
    smollm2_env: Path, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    settings = {
        "dataset": tiny_dataset_dir, "max_steps": 4, "seq_len": 128, "learning_rate": 1e-3, "eval_every": 2,
        "save_every": 2, "lora_dropout": 0.1,  # dropout: the RNG state must be restored too
    }  # fmt: skip
    train(TrainConfig(out=tmp_path / "straight", **settings))

    def interrupt_at(step: int) -> Callable[[dict[str, Any]], None]:
        def callback(record: dict[str, Any]) -> None:
            if record["step"] == step:
                raise KeyboardInterrupt  # as Ctrl-C right after that step

        return callback

    resumed = TrainConfig(out=tmp_path / "resumed", **settings)
    with pytest.raises(KeyboardInterrupt):
        train(resumed, callbacks=[interrupt_at(2)])  # step 2 had its scheduled checkpoint
    with pytest.raises(KeyboardInterrupt):
        train(resumed.model_copy(update={"resume": True}), callbacks=[interrupt_at(3)])
    run_json = json.loads((tmp_path / "resumed" / "run.json").read_text(encoding="utf-8"))
    assert (run_json["finished"], run_json["step"]) == (False, 3)  # Ctrl-C checkpointed the unscheduled step 3
    assert (tmp_path / "resumed" / "checkpoints" / "step-3").is_dir()
    summary = train(resumed.model_copy(update={"resume": True}))
    assert summary.steps == 4

    first, second = metrics(tmp_path / "straight"), metrics(tmp_path / "resumed")
    assert [record["step"] for record in second] == [record["step"] for record in first]
    for a, b in zip(first, second, strict=True):
        assert a.get("batch") == b.get("batch")
        for key in ("loss", "val_loss", "lr", "grad_norm"):
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=1e-5), (a["step"], key)


def test_two_processes_train_exactly_like_one_with_accumulation(
    smollm2_home: Path, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    """DDP (torchrun, gloo on CPU): 2 processes × 1 micro-batch per step == 1 process × 2, step for step."""
    settings = ["--max-steps", "2", "--seq-len", "128", "--learning-rate", "1e-3", "--lora-dropout", "0"]
    settings += ["--eval-every", "2", "--save-every", "2"]
    env = {**os.environ, "DOPPEL_HOME": str(smollm2_home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "doppel.cli", "train", str(tiny_dataset_dir), "--out", str(tmp_path / "ddp"), *settings]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    single = TrainConfig(dataset=tiny_dataset_dir, out=tmp_path / "single", grad_accum=2, max_steps=2, seq_len=128,
                         learning_rate=1e-3, lora_dropout=0, eval_every=2, save_every=2)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOPPEL_HOME", str(smollm2_home))
        train(single)
    ddp, one = metrics(tmp_path / "ddp"), metrics(tmp_path / "single")
    assert [record["step"] for record in ddp] == [0, 1, 2]
    for a, b in zip(ddp, one, strict=True):
        assert a.get("batch") == b.get("batch")
        assert a.get("tokens") == b.get("tokens")
        for key in ("loss", "val_loss", "grad_norm"):
            if key in b:
                assert a[key] == pytest.approx(b[key], abs=1e-5), (b["step"], key)


def test_full_fine_tuning_writes_a_loadable_model(
    smollm2_env: Path, smollm2_dir: Path, tiny_dataset_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    run = tmp_path / "full"
    config = TrainConfig(
        dataset=tiny_dataset_dir, out=run, method="full", max_steps=2, seq_len=128, learning_rate=1e-5, eval_every=2
    )
    summary = train(config)
    assert summary.final_val_loss is not None
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["method"] == "full"
    names = {path.name for path in (run / "model").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not any(name.startswith("adapter") for name in names)
    tuned = AutoModelForCausalLM.from_pretrained(run / "model", dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    changed = [
        name
        for (name, a), (_, b) in zip(tuned.named_parameters(), base.named_parameters(), strict=True)
        if not torch.equal(a, b)
    ]
    assert len(changed) > 100  # every weight trains


def test_added_chat_tokens_travel_in_the_adapter(plain_base_dir: Path, tiny_dataset_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "plain"
    vocab = len(AutoTokenizer.from_pretrained(plain_base_dir))
    train(
        TrainConfig(
            dataset=tiny_dataset_dir,
            out=run,
            base=str(plain_base_dir),
            max_steps=3,
            seq_len=256,
            learning_rate=1e-2,
            eval_every=3,
        )
    )
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert info["added_tokens"] == [{"content": IM_START, "id": vocab}, {"content": IM_END, "id": vocab + 1}]
    assert info["vocab_size"] == vocab + 2
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    assert tokenizer.convert_tokens_to_ids([IM_START, IM_END]) == [vocab, vocab + 1]
    with safe_open(run / "model" / "adapter_model.safetensors", "pt") as adapter:
        names = [name for name in adapter.keys() if "trainable_tokens" in name]  # noqa: SIM118 (not a dict)
        token_rows = {name: adapter.get_tensor(name) for name in names}
    assert {key.split(".")[-3] for key in token_rows} == {"embed_tokens", "lm_head"}  # untied: both carry the rows
    assert all(tensor.shape[0] == 2 for tensor in token_rows.values())

    base = AutoModelForCausalLM.from_pretrained(plain_base_dir, dtype=torch.float32)
    base.resize_token_embeddings(info["vocab_size"])  # what the export stage does from run.json
    tuned = PeftModel.from_pretrained(base, run / "model")
    final_val = [record["val_loss"] for record in metrics(run) if "val_loss" in record][-1]
    # The resized rows are random; only the adapter's trained rows reproduce the validated loss.
    assert validation_loss(tuned, tokenizer, tiny_dataset_dir, info, 256) == pytest.approx(final_val, abs=1e-4)


# Bad input: one line on stderr, exit code 2 ----------------------------------------------------------------


def test_missing_and_foreign_dataset_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "run")]
    assert_one_line_error(run_cli("train", [str(tmp_path / "nope"), *out], capsys), "no such dataset directory")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello", encoding="utf-8")
    assert_one_line_error(run_cli("train", [str(foreign), *out], capsys), "not a doppel dataset")
    (foreign / "manifest.json").write_text(json.dumps({"format": "something-else/2"}), encoding="utf-8")
    assert_one_line_error(
        run_cli("train", [str(foreign), *out], capsys),
        "not a doppel dataset manifest (doppel-dataset/1 or doppel-dataset/2)",
    )
    assert not (tmp_path / "run").exists()


def test_unknown_base(
    smollm2_env: Path, tiny_dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tiny_dataset_dir), "--out", str(tmp_path / "run"), "--base"]
    assert_one_line_error(run_cli("train", [*argv, str(tmp_path / "missing.gguf")], capsys), "no such file")
    assert not (tmp_path / "run").exists()


def test_owner_who_never_speaks(
    smollm2_env: Path, train_dataset_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(5)
    friends_only = [make_session(rng, speakers=FRIENDS) for _ in range(4)]
    dataset = train_dataset_factory(train=friends_only, validation=friends_only[:1])
    result = run_cli("train", [str(dataset), "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(result, f"the owner '{OWNER}' never speaks")


@pytest.mark.parametrize(
    ("scope", "fragment"),
    [("personas:Nobody", "no speaker named 'Nobody'"), ("personas:Silent", "'Silent' never speaks")],
)
def test_personas_that_do_not_exist_or_never_speak(
    smollm2_env: Path,
    train_dataset_factory: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    scope: str,
    fragment: str,
) -> None:
    rng = random.Random(6)
    sessions = [make_session(rng) for _ in range(4)]
    dataset = train_dataset_factory(train=sessions, validation=sessions[:1], speakers=(OWNER, *FRIENDS, "Silent"))
    result = run_cli("train", [str(dataset), "--out", str(tmp_path / "run"), "--loss-scope", scope], capsys)
    assert_one_line_error(result, fragment)


def test_too_little_memory_for_the_method(
    smollm2_env: Path, tiny_dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tiny_dataset_dir), "--out", str(tmp_path / "run"), "--max-memory-gb", "1.5"]
    # LoRA of 135M parameters at 256 tokens fits in 1.5 GiB by the estimate; full fine-tuning does not.
    result = run_cli("train", [*argv, "--method", "full", "--seq-len", "256"], capsys)
    assert_one_line_error(result, "--method full needs ~")
    assert "try --method lora" in result.err
    result = run_cli("train", [*argv, "--seq-len", "8192"], capsys)
    assert_one_line_error(result, "--method lora needs ~")
    assert not (tmp_path / "run").exists()


def test_qlora_needs_a_gpu(tiny_dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert not torch.cuda.is_available()
    result = run_cli("train", [str(tiny_dataset_dir), "--out", str(tmp_path / "run"), "--method", "qlora"], capsys)
    assert_one_line_error(result, "--method qlora needs a CUDA GPU")


def test_existing_run_needs_resume_and_resume_keeps_settings(
    smollm2_env: Path, tiny_dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "something").write_text("x", encoding="utf-8")
    base_argv = [str(tiny_dataset_dir), "--out", str(run)]
    assert_one_line_error(run_cli("train", base_argv, capsys), "already exists and is not empty")
    assert_one_line_error(run_cli("train", [*base_argv, "--resume"], capsys), "no run to resume here")

    saved = TrainConfig(dataset=tiny_dataset_dir, out=run, seq_len=300).resolved()
    (run / "config.yaml").write_text(saved.to_yaml(), encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"format": RUN_FORMAT, "finished": False}), encoding="utf-8")
    result = run_cli("train", [*base_argv, "--resume", "--seq-len", "512", "--seed", "3"], capsys)
    assert_one_line_error(result, "--seq-len (300 in the run, 512 now), --seed (0 in the run, 3 now)")
    assert_one_line_error(run_cli("train", [*base_argv, "--resume"], capsys), "no checkpoint to resume from")
    assert yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["seq_len"] == 300
