"""Resolving the base model: the packaged GGUF de-quantizes once into the cache and equals the GGUF itself;
HF directories pass through; anything unknown is an InputError."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from doppel.chatml import IM_END, IM_START
from doppel.errors import InputError
from training.train.base_model import (
    BASE_CACHE,
    DEFAULT_BASE,
    checkpoint_fingerprint,
    file_sha256,
    packaged_file,
    resolve_base,
)


def test_default_base_is_the_packaged_gguf_converted_once(smollm2_env: Path) -> None:
    gguf = packaged_file(DEFAULT_BASE)
    assert gguf is not None
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    started = time.perf_counter()
    base = resolve_base(None)
    assert time.perf_counter() - started < 5  # a cache hit: hashing only, no conversion
    assert base.source == DEFAULT_BASE
    assert base.sha256 == file_sha256(gguf)
    assert base.hf_dir == smollm2_env / "cache" / BASE_CACHE / base.sha256
    config = json.loads((base.hf_dir / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert not list(base.hf_dir.parent.glob(".tmp-*"))
    assert resolve_base(DEFAULT_BASE) == base
    assert resolve_base(str(gguf)).hf_dir == base.hf_dir  # the same file by path: the same cache entry


def test_dequantized_checkpoint_equals_the_gguf(smollm2_env: Path, smollm2_dir: Path) -> None:
    """The saved checkpoint is the GGUF's model: same tokenizer ids, same logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged_file(DEFAULT_BASE)
    assert gguf is not None
    text = f"{IM_START}Anna\n>>> привет, как дела?{IM_END}\n{IM_START}Me\n>>> ok 👍"
    from_gguf = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cached = AutoTokenizer.from_pretrained(smollm2_dir)
    ids = cached(text, return_tensors="pt")["input_ids"]
    assert ids.tolist() == from_gguf(text, return_tensors="pt")["input_ids"].tolist()
    assert cached.convert_tokens_to_ids([IM_START, IM_END]) == [1, 2]
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    with torch.no_grad():
        expected = reference(ids, use_cache=False).logits
        actual = model(ids, use_cache=False).logits
    assert torch.equal(actual, expected)


def test_hf_directory_passes_through_with_a_fingerprint(smollm2_dir: Path, tmp_path: Path) -> None:
    base = resolve_base(str(smollm2_dir))
    assert (base.source, base.hf_dir) == (str(smollm2_dir), smollm2_dir.resolve())
    assert base.sha256 == checkpoint_fingerprint(smollm2_dir)
    copy = tmp_path / "copy"
    shutil.copytree(smollm2_dir, copy)
    assert checkpoint_fingerprint(copy) == base.sha256
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    config["rms_norm_eps"] = 1e-6
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert checkpoint_fingerprint(copy) != base.sha256


def test_unknown_bases_are_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    with pytest.raises(InputError, match="no such file, directory, package file or Hugging Face model id"):
        resolve_base(str(tmp_path / "missing.gguf"))
    with pytest.raises(InputError, match="no such file"):
        resolve_base("not_a_package_here/model.gguf")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match=r"must be a \.gguf"):
        resolve_base(str(weights))
    with pytest.raises(InputError, match=r"no config\.json"):
        resolve_base(str(tmp_path))
    monkeypatch.setenv("DOPPEL_HOME", str(tmp_path / "home"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"PK\x03\x04 a zip, renamed")
    with pytest.raises(InputError, match="not a GGUF file"):
        resolve_base(str(broken))
    broken.write_bytes(b"GGUF but cut short")
    with pytest.raises(InputError, match="transformers cannot load this GGUF"):
        resolve_base(str(broken))
    assert not list((tmp_path / "home" / "cache" / BASE_CACHE).glob("*/config.json"))
    # A hub id is handed to huggingface_hub; offline, an id it has not cached is an error, not a hang.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(InputError, match="cannot fetch it from the Hugging Face hub"):
        resolve_base("doppel-tests/no-such-model")
    assert packaged_file("not a spec") is None
