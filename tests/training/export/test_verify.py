"""Verification passes the real conversion and fails loudly on a wrong one: the classic llama.cpp bug of
mis-permuted attention weights, and a vocabulary that tokenizes differently from the trained tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from doppel.formats.gguf_metadata import copy_with_fields
from tests.helpers.gguf import Exported
from training.export.verify import (
    MIN_TOP1_AGREEMENT,
    TIE_MARGIN,
    Predictions,
    QuantCost,
    VerificationError,
    compare,
    encode_sessions,
    hf_predictions,
    validation_texts,
    verify_f16,
)


@pytest.fixture(scope="module")
def reference(trained: tuple[Any, Any], dataset_dir: Path) -> tuple[list[str], list[list[int]], Predictions]:
    model, tokenizer = trained
    texts = validation_texts(dataset_dir)
    sessions = encode_sessions(tokenizer, texts)
    return texts, sessions, hf_predictions(model, sessions)


def permute_attention_rows(path: Path, suffix: str) -> None:
    """Apply llama.cpp's Q/K row permutation a second time to every ``*{suffix}`` tensor, in place: what a
    converter that permutes twice (or not at all) produces. Shapes and dtypes stay valid; the math does not."""
    reader = gguf.GGUFReader(path, "r+")
    heads = int(reader.get_field("llama.attention.head_count").contents())
    kv_heads = int(reader.get_field("llama.attention.head_count_kv").contents())
    changed = 0
    for tensor in reader.tensors:
        if not tensor.name.endswith(suffix):
            continue
        data = tensor.data
        n_head = heads if suffix == "attn_q.weight" else kv_heads
        rows = data.shape[0]
        order = np.arange(rows).reshape(n_head, 2, rows // n_head // 2).swapaxes(1, 2).reshape(rows)
        data[...] = np.array(data[order])
        changed += 1
    reader.data.flush()
    assert changed == 30


def test_the_real_conversion_passes(
    merged_export: Exported, trained: tuple[Any, Any], reference: tuple[list[str], list[list[int]], Predictions]
) -> None:
    texts, sessions, expected = reference
    agreement, predictions = verify_f16(merged_export.out, trained[1], texts, sessions, expected)
    assert agreement.passed
    assert agreement.positions == expected.positions == predictions.positions
    assert agreement.perplexity == pytest.approx(agreement.reference_perplexity, rel=0.01)


def test_mis_permuted_attention_fails_loudly(
    merged_export: Exported,
    trained: tuple[Any, Any],
    reference: tuple[list[str], list[list[int]], Predictions],
    tmp_path: Path,
) -> None:
    texts, sessions, expected = reference
    broken = tmp_path / "broken.gguf"
    shutil.copyfile(merged_export.out, broken)
    permute_attention_rows(broken, "attn_k.weight")
    with pytest.raises(VerificationError, match=r"does not match the trained model: top-1 agreement \d"):
        verify_f16(broken, trained[1], texts, sessions, expected)


def test_a_wrong_vocabulary_fails_loudly(
    merged_export: Exported,
    trained: tuple[Any, Any],
    reference: tuple[list[str], list[list[int]], Predictions],
    tmp_path: Path,
) -> None:
    """Swap two words' token strings in the GGUF vocabulary; the weights are untouched."""
    texts, sessions, expected = reference
    tokenizer = trained[1]
    first, second = tokenizer.convert_tokens_to_ids(["Ġyou", "Ġsure"])
    reader = gguf.GGUFReader(merged_export.out)
    tokens = list(reader.get_field("tokenizer.ggml.tokens").contents())
    tokens[first], tokens[second] = tokens[second], tokens[first]
    broken = tmp_path / "vocab.gguf"
    _replace_tokens(merged_export.out, tokens, broken)
    with pytest.raises(VerificationError, match=r"tokenizes validation session \d+ differently"):
        verify_f16(broken, tokenizer, texts, sessions, expected)


def _replace_tokens(src: Path, tokens: list[str], dst: Path) -> None:
    """Copy ``src`` with ``tokenizer.ggml.tokens`` replaced, the way the metadata writer copies files."""
    string_array = (tokens, gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING)
    copy_with_fields(gguf.GGUFReader(src), dst, {"tokenizer.ggml.tokens": string_array})


def test_near_ties_swapped_by_rounding_are_not_disagreements() -> None:
    """Four positions; the candidate swaps a near-tie (margin 0.01) and a clear choice (margin 2.0)."""
    reference = Predictions(
        top1=np.array([5, 6, 7, 8]),
        target=np.log(np.array([0.5, 0.4, 0.3, 0.2])),
        best=np.log(np.array([0.5, 0.4, 0.3, 0.2])),
        second=np.array([9, 9, 9, 9]),
        margin=np.array([1.0, TIE_MARGIN / 5, 2.0, 1.0]),
    )
    candidate = Predictions(
        top1=np.array([5, 9, 9, 8]),
        target=reference.target + np.array([0.0, 0.01, -0.5, 0.0]),
        at_reference=reference.best + np.array([0.0, -0.02, -1.0, 0.0]),
    )
    agreement = compare(reference, candidate, sessions=1)
    assert agreement.top1_agreement == 0.5
    assert agreement.near_ties == 1
    assert agreement.agreement_with_ties == 0.75 < MIN_TOP1_AGREEMENT
    assert not agreement.passed
    assert agreement.max_abs_dlogprob == pytest.approx(1.0)
    assert agreement.perplexity > agreement.reference_perplexity


def test_a_quantization_that_costs_much_perplexity_is_called_out() -> None:
    usual = QuantCost(quant="q4_k_m", f16_perplexity=14.3, perplexity=15.1, top1_agreement=0.87)
    costly = QuantCost(quant="q5_k_m", f16_perplexity=14.3, perplexity=21.2, top1_agreement=0.74)
    broken = QuantCost(quant="q8_0", f16_perplexity=14.3, perplexity=float("nan"), top1_agreement=0.0)
    assert usual.advice() is None
    assert (
        costly.advice() == "q5_k_m raises perplexity by +48% against f16 on this model; try another --quant "
        "(q8_0 or q4_k_m) and compare"
    )
    assert broken.costly
