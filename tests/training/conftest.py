"""Fixtures for the training, and export tests: the de-quantized SmolLM2 checkpoint, tiny datasets, a plain base."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.datasets import make_session, train_plain_tokenizer, write_dataset


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_home: Path) -> Path:
    """The de-quantized SmolLM2 checkpoint directory (model + tokenizer)."""
    (base,) = list((smollm2_home / "cache" / "base").glob("*/config.json"))
    return base.parent


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 training and 6 validation sessions of a few turns each, owner "Me", friends Anna and Bob Smith."""
    rng = random.Random(3)
    train = [make_session(rng) for _ in range(24)]
    validation = [make_session(rng) for _ in range(6)]
    return write_dataset(tmp_path_factory.mktemp("data") / "dataset", train, validation)


@pytest.fixture
def plain_tokenizer() -> Any:
    return train_plain_tokenizer()


@pytest.fixture(scope="session")
def plain_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with untied embeddings and the plain tokenizer: a base that lacks ChatML."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_plain_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("plain-base")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def train_dataset_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write a dataset with chosen sessions, owner and speakers into a fresh directory."""
    counter = iter(range(1_000_000))

    def factory(**kwargs: Any) -> Path:
        return write_dataset(tmp_path / f"dataset-{next(counter)}", **kwargs)

    return factory
