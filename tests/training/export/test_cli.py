"""Every kind of bad input to ``doppel export`` is one line on stderr and exit code 2, and writes nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from doppel.cli import main
from tests.helpers.cli import assert_one_line_error, run_cli


def assert_nothing_written(directory: Path) -> None:
    assert not directory.exists()


@pytest.fixture
def run_copy(lora_run: Path, tmp_path: Path) -> Callable[..., Path]:
    """A copy of the finished run (run.json, config, model) with run.json fields replaced."""

    def factory(name: str = "run", **changes: Any) -> Path:
        copy = tmp_path / name
        copy.mkdir()
        shutil.copytree(lora_run / "model", copy / "model")
        shutil.copy(lora_run / "config.yaml", copy / "config.yaml")
        info = json.loads((lora_run / "run.json").read_text(encoding="utf-8"))
        info.update(changes)
        (copy / "run.json").write_text(json.dumps(info), encoding="utf-8")
        return copy

    return factory


def test_missing_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(run_cli("export", [], capsys), "RUN is required")
    assert_one_line_error(run_cli("export", [str(tmp_path)], capsys), "--out MODEL.gguf is required")


def test_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["export", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for flag in ("RUN", "--out MODEL.gguf", "--quant TYPE", "--adapter-only", "--no-verify", "--config FILE"):
        assert flag in out, flag


def test_a_config_file_gives_settings_and_flags_override_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "export.yaml"
    config.write_text(
        f"run: {tmp_path / 'nope'}\nout: {tmp_path / 'out' / 'm.gguf'}\nquant: q3_k_s\n", encoding="utf-8"
    )
    result = run_cli("export", ["--config", str(config)], capsys)
    assert_one_line_error(result, "--quant q3_k_s: unsupported; choose one of q4_k_m, q5_k_m, q6_k, q8_0, f16")
    assert_one_line_error(
        run_cli("export", ["--config", str(config), "--quant", "q8_0"], capsys), "no such run directory"
    )
    config.write_text("quantization: q8_0\n", encoding="utf-8")
    assert_one_line_error(run_cli("export", ["--config", str(config)], capsys), "unknown setting(s) quantization")
    assert_nothing_written(tmp_path / "out")


def test_bad_out_and_quant(lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert_one_line_error(
        run_cli("export", [str(lora_run), "--out", str(out / "model.bin")], capsys), "must be a .gguf file"
    )
    result = run_cli("export", [str(lora_run), "--out", str(out / "m.gguf"), "--quant", "q3_k_s"], capsys)
    assert_one_line_error(result, "--quant q3_k_s: unsupported; choose one of q4_k_m, q5_k_m, q6_k, q8_0, f16")
    assert_nothing_written(out)


def test_missing_or_foreign_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "out" / "m.gguf")]
    assert_one_line_error(run_cli("export", [str(tmp_path / "nope"), *out], capsys), "no such run directory")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    assert_one_line_error(
        run_cli("export", [str(foreign), *out], capsys), "not a doppel run directory, run.json is missing"
    )
    (foreign / "run.json").write_text("{not json", encoding="utf-8")
    assert_one_line_error(run_cli("export", [str(foreign), *out], capsys), "run.json: unreadable")
    (foreign / "run.json").write_text(json.dumps({"format": "something/9"}), encoding="utf-8")
    assert_one_line_error(run_cli("export", [str(foreign), *out], capsys), "not a doppel-run/1 run description")
    (foreign / "run.json").write_text(json.dumps({"format": "doppel-run/1", "method": "lora"}), encoding="utf-8")
    assert_one_line_error(
        run_cli("export", [str(foreign), *out], capsys), "incomplete, missing base, loss_scope, dataset"
    )
    assert_nothing_written(tmp_path / "out")


def test_unfinished_or_incomplete_run(
    run_copy: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["--out", str(tmp_path / "out" / "m.gguf")]
    unfinished = run_copy("unfinished", finished=False, step=2)
    assert_one_line_error(run_cli("export", [str(unfinished), *out], capsys), "the run has not finished (step 2)")

    no_weights = run_copy("no-weights")
    (no_weights / "model" / "adapter_model.safetensors").unlink()
    result = run_cli("export", [str(no_weights), *out], capsys)
    assert_one_line_error(result, "incomplete lora model, missing adapter_model.safetensors")

    no_model = run_copy("no-model")
    shutil.rmtree(no_model / "model")
    assert_one_line_error(
        run_cli("export", [str(no_model), *out], capsys), "model: missing; the run has no final model"
    )

    truncated = run_copy("truncated")
    weights = truncated / "model" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert_one_line_error(run_cli("export", [str(truncated), *out], capsys), "adapter_model.safetensors: truncated")

    garbage = run_copy("garbage")
    (garbage / "model" / "adapter_model.safetensors").write_bytes(b"\xff" * 64)
    assert_one_line_error(run_cli("export", [str(garbage), *out], capsys), "damaged safetensors file")
    assert_nothing_written(tmp_path / "out")


def test_unsupported_architecture(
    smollm2_env: Path, run_copy: Callable[..., Path], lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = json.loads((lora_run / "run.json").read_text(encoding="utf-8"))
    fake_base = tmp_path / "fancy-base"
    shutil.copytree(info["base"]["hf_dir"], fake_base, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((fake_base / "config.json").read_text(encoding="utf-8"))
    config["architectures"] = ["FancyNewForCausalLM"]
    (fake_base / "config.json").write_text(json.dumps(config), encoding="utf-8")
    run = run_copy("fancy", base={**info["base"], "hf_dir": str(fake_base)})
    result = run_cli("export", [str(run), "--out", str(tmp_path / "out" / "m.gguf")], capsys)
    assert_one_line_error(result, "architecture FancyNewForCausalLM is not supported by llama.cpp ")
    assert "causal LMs such as LlamaForCausalLM" in result.err
    assert_nothing_written(tmp_path / "out")


def test_adapter_only_needs_a_plain_lora_run(
    smollm2_env: Path, run_copy: Callable[..., Path], lora_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import save_file

    out = ["--out", str(tmp_path / "out" / "a.gguf"), "--adapter-only"]
    full = run_copy("full", method="full")
    shutil.rmtree(full / "model")
    info = json.loads((lora_run / "run.json").read_text(encoding="utf-8"))
    shutil.copytree(info["base"]["hf_dir"], full / "model", ignore=shutil.ignore_patterns("*.safetensors"))
    save_file({"lm_head.weight": torch.zeros(2, 2)}, str(full / "model" / "model.safetensors"))
    assert_one_line_error(
        run_cli("export", [str(full), *out], capsys), "--adapter-only needs a LoRA run; this is a full"
    )

    added = run_copy("added", added_tokens=[{"content": "<|im_start|>", "id": 49152}], vocab_size=49153)
    assert_one_line_error(run_cli("export", [str(added), *out], capsys), "a llama.cpp LoRA adapter cannot carry")

    dora = run_copy("dora")
    config_path = dora / "model" / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["use_dora"] = True
    config_path.write_text(json.dumps(config), encoding="utf-8")
    assert_one_line_error(run_cli("export", [str(dora), *out], capsys), "the adapter uses DoRA")
    assert_nothing_written(tmp_path / "out")


def test_verification_needs_the_dataset(
    smollm2_env: Path, run_copy: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = run_copy("moved", dataset_path=str(tmp_path / "gone"))
    result = run_cli("export", [str(run), "--out", str(tmp_path / "out" / "m.gguf")], capsys)
    assert_one_line_error(result, "restore it, or pass --no-verify")
    assert_nothing_written(tmp_path / "out")


def test_not_enough_disk_space(
    smollm2_env: Path,
    lora_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = shutil.disk_usage

    def nearly_full(path: Any) -> Any:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 100_000_000, 100_000_000)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)  # the file system's answer, not our code, is faked
    result = run_cli("export", [str(lora_run), "--out", str(tmp_path / "out" / "m.gguf")], capsys)
    assert_one_line_error(result, "not enough free disk space in ")
    assert "GB are free" in result.err
    assert_nothing_written(tmp_path / "out")


def test_scratch_of_a_killed_export_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from training.export.scratch import remove_stale_scratch

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid now names no process
    out = tmp_path / "model.gguf"
    dead = tmp_path / f".tmp-export-model.gguf-{finished.pid}"
    alive = tmp_path / f".tmp-export-model.gguf-{os.getpid()}"
    other = tmp_path / f".tmp-export-other.gguf-{finished.pid}"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "f16.gguf").write_bytes(b"GGUF")
    remove_stale_scratch(out)
    assert not dead.exists()
    assert alive.exists() and other.exists()
