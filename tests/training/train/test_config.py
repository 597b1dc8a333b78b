"""The settings schema: YAML round trip, flags equal config keys, precedence, bad values, shipped configs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from doppel.cli import build_parser, main
from doppel.errors import InputError
from doppel.settings import flag_name
from training.train.cli import config_from_args
from training.train.config import DEFAULT_LEARNING_RATE, TrainConfig, resume_conflicts

REPO = Path(__file__).resolve().parents[3]
SHIPPED_CONFIGS = sorted((REPO / "configs" / "train").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((REPO / "deploy" / "accelerate").glob("*.yaml"))


def parse(argv: list[str]) -> TrainConfig:
    args = build_parser().parse_args(["train", *argv])
    return config_from_args(args)


def test_yaml_round_trip_of_every_field(tmp_path: Path) -> None:
    config = TrainConfig(
        dataset=tmp_path / "data",
        out=tmp_path / "run",
        base="some/model",
        method="full",
        loss_scope="personas:Anna,Bob Smith",
        epochs=3,
        max_steps=17,
        seq_len=512,
        rows_per_batch=2,
        grad_accum=4,
        learning_rate=3e-5,
        lr_scheduler="linear",
        warmup_ratio=0.1,
        weight_decay=0.01,
        max_grad_norm=0.5,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.1,
        lora_target_modules=["q_proj", "v_proj"],
        gradient_checkpointing=True,
        precision="bf16",
        attn_implementation="eager",
        eval_every=7,
        save_every=9,
        keep_checkpoints=3,
        seed=42,
        resume=True,
        max_memory_gb=12.5,
    )
    assert set(config.model_fields_set) == set(TrainConfig.model_fields)  # the test covers every field
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml(), encoding="utf-8")
    assert TrainConfig.load_yaml(path) == config
    resolved = TrainConfig(dataset=Path("rel/data"), out=Path("rel/run")).resolved()
    path.write_text(resolved.to_yaml(), encoding="utf-8")
    assert TrainConfig.load_yaml(path) == resolved
    assert resolved.learning_rate == DEFAULT_LEARNING_RATE["lora"]
    assert resolved.dataset.is_absolute()


def test_every_field_is_a_flag() -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for name in TrainConfig.model_fields:
        assert flag_name(TrainConfig, name) in help_text


def test_flags_equal_the_same_settings_in_a_file(tmp_path: Path) -> None:
    settings = {"method": "full", "max_steps": 5, "lora_target_modules": ["q_proj", "k_proj"], "seq_len": 300}
    config_file = tmp_path / "train.yaml"
    config_file.write_text(yaml.safe_dump(settings), encoding="utf-8")
    from_file = parse(["DATA", "--out", "RUN", "--config", str(config_file)])
    from_flags = parse(
        [
            *("DATA", "--out", "RUN", "--method", "full", "--max-steps", "5"),
            *("--lora-target-modules", "q_proj,k_proj", "--seq-len", "300"),
        ]
    )
    assert from_file == from_flags
    assert from_file.max_steps == 5
    assert from_file.lora_target_modules == ["q_proj", "k_proj"]


def test_flags_override_the_file_which_overrides_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "train.yaml"
    config_file.write_text("seq_len: 300\nlora_r: 4\ndataset: FROM_FILE\nout: RUN\n", encoding="utf-8")
    config = parse(["--config", str(config_file), "--lora-r", "32", "--no-gradient-checkpointing"])
    assert (config.seq_len, config.lora_r, config.dataset) == (300, 32, Path("FROM_FILE"))
    assert config.gradient_checkpointing is False
    assert config.epochs == TrainConfig.model_fields["epochs"].default


def test_resume_starts_from_the_runs_saved_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    saved = TrainConfig(dataset=tmp_path / "data", out=run, seq_len=300, seed=9).resolved()
    (run / "config.yaml").write_text(saved.to_yaml(), encoding="utf-8")
    config = parse([str(tmp_path / "data"), "--out", str(run), "--resume", "--eval-every", "5"])
    assert (config.seq_len, config.seed, config.eval_every, config.resume) == (300, 9, 5, True)
    assert resume_conflicts(saved, config) == []
    changed = config.model_copy(update={"seq_len": 512})
    assert resume_conflicts(saved, changed) == ["--seq-len (300 in the run, 512 now)"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["DATA", "--out", "RUN", "--lora-r", "many"], "--lora-r"),
        (["DATA", "--out", "RUN", "--epochs", "0"], "--epochs"),
        (["DATA", "--out", "RUN", "--loss-scope", "everyone"], "--loss-scope"),
        (["DATA"], "--out RUN is required"),
    ],
)
def test_bad_settings_are_one_line_input_errors(argv: list[str], message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as raised:
        parse(argv)
    assert "\n" not in str(raised.value)


def test_bad_config_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "train.yaml"
    config_file.write_text("learning_rate: 1e-4\nlearnin_rate: 2\n", encoding="utf-8")
    assert main(["train", "DATA", "--out", "RUN", "--config", str(config_file)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "unknown setting(s) learnin_rate" in error
    assert main(["train", "DATA", "--out", "RUN", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda path: path.name)
def test_shipped_configs_load_and_state_their_launch_command(path: Path) -> None:
    assert len(SHIPPED_CONFIGS) == 3
    text = path.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any(f"--config configs/train/{path.name}" in line for line in header)
    config = parse(["DATA", "--out", "RUN", "--config", str(path)])
    assert config.dataset == Path("DATA")


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda path: path.name)
def test_accelerate_configs_load_and_state_their_launch_command(path: Path) -> None:
    """accelerate itself reads each config; every FSDP key is one that `accelerate launch` knows."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    assert {p.name for p in ACCELERATE_CONFIGS} == {"single-gpu.yaml", "multi-gpu-ddp.yaml", "fsdp-full-shard.yaml"}
    assert f"accelerate launch --config_file deploy/accelerate/{path.name}" in path.read_text(encoding="utf-8")
    config = load_config_from_file(str(path))
    assert config.mixed_precision == "bf16"
    known = {action.dest for action in launch_command_parser()._actions}
    assert set(config.fsdp_config) <= known
    assert (config.fsdp_config.get("fsdp_version"), config.distributed_type.value) in {
        (None, "NO"),
        (None, "MULTI_GPU"),
        (2, "FSDP"),
    }


def test_cli_namespace_holds_only_given_flags() -> None:
    args = build_parser().parse_args(["train", "DATA", "--out", "RUN"])
    given = {name for name in TrainConfig.model_fields if hasattr(args, name)}
    assert given == {"dataset", "out"}
    assert isinstance(args, argparse.Namespace)
