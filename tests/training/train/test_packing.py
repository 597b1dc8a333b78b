"""Packing: every session exactly once, nothing cut, and a packed batch's loss equals the separate losses."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.datasets import make_session
from training.train.attention import SEGMENTS, segment_starts
from training.train.labels import IGNORE_INDEX, LossScope, SessionTokenizer, TokenizedSession
from training.train.loss import packed_loss
from training.train.packing import collate, pack_rows, plan_epoch, supervised_count


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), min_size=0, max_size=200), seq_len=st.integers(16, 256))
def test_rows_hold_every_session_once_and_respect_capacity(lengths: list[int], seq_len: int) -> None:
    rows = pack_rows(lengths, list(range(len(lengths))), seq_len, block=64)
    placed = sorted(index for row in rows for index in row)
    assert placed == list(range(len(lengths)))
    for row in rows:
        assert sum(lengths[index] for index in row) <= seq_len or len(row) == 1  # an oversize session rides alone


def test_rows_are_nearly_full_for_chat_like_lengths() -> None:
    """Real tokens over the row capacity spent on them: PACKING_BLOCK is sized to fill rows to ~99%."""
    rng = random.Random(0)
    lengths = [int(rng.lognormvariate(4.5, 0.9)) + 8 for _ in range(3000)]
    lengths = [min(length, 1024) for length in lengths]
    rows = [row for batch in plan_epoch(lengths, seq_len=1024, rows_per_batch=1, seed=0, epoch=0) for row in batch]
    used = sum(lengths[index] for row in rows for index in row)
    capacity = sum(max(1024, sum(lengths[index] for index in row)) for row in rows)
    assert used / capacity > 0.97


def test_plan_is_a_pure_function_of_seed_and_epoch() -> None:
    lengths = [random.Random(1).randint(5, 90) for _ in range(100)]
    assert plan_epoch(lengths, 128, 2, seed=5, epoch=0) == plan_epoch(lengths, 128, 2, seed=5, epoch=0)
    assert plan_epoch(lengths, 128, 2, seed=5, epoch=0) != plan_epoch(lengths, 128, 2, seed=5, epoch=1)
    assert plan_epoch(lengths, 128, 2, seed=5, epoch=0) != plan_epoch(lengths, 128, 2, seed=6, epoch=0)


def _session(ids: list[int], supervised_from: int) -> TokenizedSession:
    return TokenizedSession(input_ids=ids, labels=[IGNORE_INDEX] * supervised_from + ids[supervised_from:])


def test_collate_restarts_positions_ignores_first_tokens_and_pads_in_its_own_block() -> None:
    sessions = [_session([1, 10, 11, 12], 1), _session([1, 20, 21], 0), _session([1, 30], 1)]
    batch = collate(sessions, [[0, 1], [2]], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 10, 11, 12, 1, 20, 21], [1, 30, 0, 0, 0, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 0, 1, 2, 3, 4]]
    ignore = IGNORE_INDEX
    # Session 1's first label (1) would be predicted from session 0's last token: it must be ignored.
    assert batch.labels.tolist() == [
        [ignore, 10, 11, 12, ignore, 20, 21],
        [ignore, 30, ignore, ignore, ignore, ignore, ignore],
    ]
    assert batch.n_tokens == 9
    assert batch.n_supervised == supervised_count(sessions, [[0, 1], [2]]) == 6
    assert batch.sessions == (0, 1, 2)


def test_collate_flattens_rows_for_flash_attention() -> None:
    sessions = [_session([1, 10, 11, 12], 1), _session([1, 20, 21], 0), _session([1, 30], 1)]
    flat = collate(sessions, [[0, 1], [2]], pad_id=0, flatten=True)
    assert flat.input_ids.tolist() == [[1, 10, 11, 12, 1, 20, 21, 1, 30]]
    assert flat.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1]]
    assert (flat.n_tokens, flat.n_supervised) == (9, 6)


@pytest.fixture(scope="module")
def smollm2_fp32(smollm2_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    model.requires_grad_(False)  # gradient tests switch on only the weights they compare
    return model


@contextmanager
def trainable(weight: torch.nn.Parameter) -> Iterator[None]:
    weight.requires_grad_(True)
    try:
        yield
    finally:
        weight.grad = None
        weight.requires_grad_(False)


@pytest.fixture(scope="module")
def chat_sessions(smollm2_tokenizer: Any) -> list[TokenizedSession]:
    rng = random.Random(11)
    tokenizer = SessionTokenizer(smollm2_tokenizer, LossScope.parse("all"), "Me")
    return tokenizer.many([make_session(rng, turns=rng.randint(2, 5)) for _ in range(5)])


def _separate_losses(model: Any, sessions: list[TokenizedSession], indices: list[int]) -> tuple[float, int]:
    """Sum of per-token losses and supervised count, one session per forward pass, no padding."""
    total, count = 0.0, 0
    for index in indices:
        batch = collate(sessions, [[index]], pad_id=0)
        with torch.no_grad():
            loss = model(**batch.model_inputs(), use_cache=False).loss
        total += float(loss) * batch.n_supervised
        count += batch.n_supervised
    return total, count


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager", SEGMENTS])
def test_packed_loss_equals_token_weighted_separate_losses(
    smollm2_fp32: Any, chat_sessions: list[TokenizedSession], attn_implementation: str
) -> None:
    smollm2_fp32.set_attn_implementation(attn_implementation)
    rows = [[0, 1, 2], [3, 4]]  # two rows of different length: the second is padded
    packed = collate(chat_sessions, rows, pad_id=0)
    assert (packed.position_ids == 0).sum() > len(rows)  # several sessions per row, plus a padding block
    with torch.no_grad():
        packed_loss = float(smollm2_fp32(**packed.model_inputs(), use_cache=False).loss)
    total, count = _separate_losses(smollm2_fp32, chat_sessions, [0, 1, 2, 3, 4])
    assert count == packed.n_supervised
    assert packed_loss == pytest.approx(total / count, abs=1e-4)
    smollm2_fp32.set_attn_implementation("sdpa")


def test_without_restarting_positions_sessions_would_leak(
    smollm2_fp32: Any, chat_sessions: list[TokenizedSession]
) -> None:
    """Control: the same row as one long causal sequence (sessions see each other) gives a different loss."""
    packed = collate(chat_sessions, [[0, 1, 2]], pad_id=0)
    leaky_positions = torch.arange(packed.input_ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        packed_loss = float(smollm2_fp32(**packed.model_inputs(), use_cache=False).loss)
        leaky_loss = float(
            smollm2_fp32(
                input_ids=packed.input_ids,
                labels=packed.labels,
                position_ids=leaky_positions,
                use_cache=False,
            ).loss
        )
    total, count = _separate_losses(smollm2_fp32, chat_sessions, [0, 1, 2])
    assert abs(leaky_loss - total / count) > 1e-3
    assert packed_loss == pytest.approx(total / count, abs=1e-4)


@pytest.mark.parametrize("attn_implementation", ["sdpa", SEGMENTS])
def test_packed_gradients_equal_separate_gradients(
    smollm2_fp32: Any, chat_sessions: list[TokenizedSession], attn_implementation: str
) -> None:
    """What training uses: the gradient of the summed packed loss equals the sum of separate gradients."""
    smollm2_fp32.set_attn_implementation(attn_implementation)
    weight = smollm2_fp32.model.layers[0].self_attn.q_proj.weight
    packed = collate(chat_sessions, [[0, 1, 2]], pad_id=0)
    with trainable(weight):
        smollm2_fp32(**packed.model_inputs(), use_cache=False, num_items_in_batch=1).loss.backward()
        packed_grad = weight.grad.clone()
        weight.grad = None
        for index in [0, 1, 2]:
            single = collate(chat_sessions, [[index]], pad_id=0)
            smollm2_fp32(**single.model_inputs(), use_cache=False, num_items_in_batch=1).loss.backward()
        assert torch.allclose(packed_grad, weight.grad, atol=1e-4, rtol=1e-3)
    smollm2_fp32.set_attn_implementation("sdpa")


def test_supervised_only_logits_give_the_models_own_loss_and_gradients(
    smollm2_fp32: Any, chat_sessions: list[TokenizedSession]
) -> None:
    """packed_loss computes logits only where a label is supervised; value and gradients must not change."""
    batch = collate(chat_sessions, [[0, 1, 2], [3, 4]], pad_id=0)
    weight = smollm2_fp32.model.layers[27].mlp.down_proj.weight
    with trainable(weight):
        full = smollm2_fp32(**batch.model_inputs(), use_cache=False).loss
        full.backward()
        full_grad = weight.grad.clone()
        weight.grad = None
        ours = packed_loss(smollm2_fp32, batch, "cpu")
        ours.backward()
        assert float(ours.detach()) == pytest.approx(float(full.detach()), abs=1e-5)
        assert torch.allclose(weight.grad, full_grad, atol=1e-6, rtol=1e-4)
    with torch.no_grad():
        summed = packed_loss(smollm2_fp32, batch, "cpu", num_items=1.0)
    assert float(summed) == pytest.approx(float(full.detach()) * batch.n_supervised, rel=1e-5)


def test_a_batch_without_supervised_tokens_has_zero_loss_and_zero_gradients(
    smollm2_fp32: Any, chat_sessions: list[TokenizedSession]
) -> None:
    unsupervised = [TokenizedSession(session.input_ids, [IGNORE_INDEX] * len(session)) for session in chat_sessions]
    batch = collate(unsupervised, [[0, 1]], pad_id=0)
    weight = smollm2_fp32.model.layers[0].mlp.up_proj.weight
    with trainable(weight):
        loss = packed_loss(smollm2_fp32, batch, "cpu", num_items=1.0)
        loss.backward()
        assert float(loss.detach()) == 0.0
        assert weight.grad is not None
        assert not weight.grad.any()


def test_segment_starts() -> None:
    assert segment_starts(torch.tensor([0, 1, 2, 0, 1, 0, 0, 1])) == [0, 3, 5, 6]
    assert segment_starts(torch.tensor([0, 1, 2, 3])) == [0]
