"""Real exports of a tiny LoRA run: llama.cpp loads the GGUF files and, greedy at temperature 0, writes exactly what
the trained (merged) transformers model writes, stopping at ``<|im_end|>`` like it; the summary reports what was
measured; nothing is left behind; an adapter export keeps an identical base that is already there."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
import torch

from doppel.chatml import IM_END, Turn, render_session, turn_header
from doppel.cli import main
from doppel.llama_loader import open_llama
from tests.helpers.gguf import Exported

GREEDY_TOKENS = 16
PROMPTS = [
    render_session([Turn("Anna", ("are you free tonight?",))]) + turn_header("Me"),
    render_session([Turn("Bob Smith", ("lunch tomorrow?",))]) + turn_header("Me"),
    render_session(
        [Turn("Anna", ("how was the trip?",)), Turn("Me", ("great, tell you later",)), Turn("Anna", ("ok bye",))]
    )
    + turn_header("Me"),
]


def hf_greedy(model: Any, tokenizer: Any, prompt: str) -> tuple[str, bool]:
    """The merged model's greedy continuation (text without the stop token) and whether it stopped at it."""
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        output = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=GREEDY_TOKENS,
            do_sample=False,
            eos_token_id=im_end,
            pad_token_id=im_end,
        )
    new = output[0, ids.shape[1] :].tolist()
    stopped = bool(new) and new[-1] == im_end
    return tokenizer.decode(new[:-1] if stopped else new), stopped


def llama_greedy(model_path: Path, prompts: list[str], lora_path: Path | None = None) -> list[tuple[str, bool]]:
    """llama.cpp's greedy completions of the prompts, the way an engine would ask for them."""
    llm = open_llama(model_path, lora_path=lora_path, n_ctx=256, seed=0, verbose=False)
    try:
        results = []
        for prompt in prompts:
            completion = llm.create_completion(prompt, max_tokens=GREEDY_TOKENS, temperature=0.0, top_k=1)
            choice = completion["choices"][0]
            results.append((choice["text"], choice["finish_reason"] == "stop"))
        return results
    finally:
        llm.close()


def test_merged_gguf_writes_what_the_trained_model_writes(merged_export: Exported, trained: tuple[Any, Any]) -> None:
    model, tokenizer = trained
    expected = [hf_greedy(model, tokenizer, prompt) for prompt in PROMPTS]
    assert any(stopped for _, stopped in expected)  # the check covers stopping at <|im_end|>, not only text
    assert all(text.startswith(">>> ") for text, _ in expected)  # the trained message format
    assert llama_greedy(merged_export.out, PROMPTS) == expected


def test_adapter_over_quantized_base_writes_what_the_trained_model_writes(
    adapter_export: Exported, trained: tuple[Any, Any]
) -> None:
    model, tokenizer = trained
    assert adapter_export.base is not None
    expected = [hf_greedy(model, tokenizer, prompt) for prompt in PROMPTS]
    assert llama_greedy(adapter_export.base, PROMPTS, lora_path=adapter_export.out) == expected
    # Without the adapter the base answers differently: the adapter really is applied.
    assert llama_greedy(adapter_export.base, PROMPTS) != expected


def test_merged_export_summary(merged_export: Exported) -> None:
    summary = merged_export.summary
    assert summary.quant == "f16"
    assert summary.out.stat().st_size == summary.quantized_bytes == summary.f16_bytes
    assert summary.checkpoint_bytes > 1.9 * summary.f16_bytes  # the fp32 merged checkpoint
    assert summary.agreement is not None and summary.agreement.passed
    assert summary.agreement.top1_agreement >= 0.98
    assert 0 < summary.agreement.max_abs_dlogprob < 0.2
    assert summary.agreement.sessions == 6 and summary.agreement.positions > 200
    assert summary.cost is None  # f16 is the reference itself
    assert "verify  f16 vs trained model: top-1 agreement" in merged_export.stdout


def test_adapter_export_prints_sizes_verification_and_quantization_cost(adapter_export: Exported) -> None:
    out = adapter_export.stdout
    assert adapter_export.base is not None
    assert f"adapter {adapter_export.out}" in out
    assert f"base    {adapter_export.base}" in out
    assert "× smaller than f16" in out
    assert "verify  f16 vs trained model: top-1 agreement" in out
    assert "quant   q8_0 perplexity" in out
    assert adapter_export.out.stat().st_size < 30e6
    assert 100e6 < adapter_export.base.stat().st_size < 200e6


def test_no_scratch_is_left_behind(merged_export: Exported, adapter_export: Exported, exports_dir: Path) -> None:
    assert adapter_export.base is not None
    assert sorted(path.name for path in exports_dir.iterdir()) == sorted(
        [merged_export.out.name, adapter_export.out.name, adapter_export.base.name]
    )


def test_second_adapter_export_keeps_the_base_already_there(
    adapter_export: Exported, lora_run: Path, smollm2_env: Path
) -> None:
    assert adapter_export.base is not None
    before = adapter_export.base.stat()
    out = adapter_export.out.with_name("adapter-again.gguf")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", str(lora_run), "--out", str(out), "--adapter-only", "--quant", "q8_0", "--no-verify"])
    assert code == 0
    assert "(kept from an earlier export)" in stdout.getvalue()
    after = adapter_export.base.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert out.read_bytes() == adapter_export.out.read_bytes()  # conversion is deterministic
    out.unlink()


def test_registering_the_export_command_imports_nothing_heavy() -> None:
    """`doppel --help` must stay fast: no torch, transformers, numpy or llama_cpp when the command is added."""
    import os
    import subprocess
    import sys

    code = (
        "import argparse, sys\n"
        "from training.export import cli as export_cli\n"
        "export_cli.register(argparse.ArgumentParser().add_subparsers())\n"
        "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'llama_cpp', 'gguf') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert finished.stdout.strip() == "[]"


def test_full_fine_tune_exports_without_a_merge_at_the_default_quantization(
    smollm2_env: Path, dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from doppel.formats.gguf_metadata import read_doppel_metadata, read_fields
    from training.train.config import TrainConfig
    from training.train.loop import train

    run = tmp_path / "full"
    train(TrainConfig(dataset=dataset_dir, out=run, method="full", max_steps=1, seq_len=128, learning_rate=1e-4))
    out = tmp_path / "out" / "model.gguf"
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "q4_k_m" in printed and "verify  f16 vs trained model" in printed and "quant   q4_k_m perplexity" in printed
    assert read_doppel_metadata(out)["method"] == "full"
    assert read_fields(out, lambda key: key == "general.file_type") == {"general.file_type": 15}  # MOSTLY_Q4_K_M
    assert sorted(path.name for path in out.parent.iterdir()) == ["model.gguf"]
    [(text, _)] = llama_greedy(out, PROMPTS[:1])  # loads and generates
    assert text
