"""Variable-length attention for packed rows where flash-attention is not available (the CPU).

A packed row holds several sessions whose ``position_ids`` restart at 0. transformers' ``sdpa`` honours that
with a block-diagonal mask over the whole row, so it still computes (and throws away) attention between every
pair of tokens: for a 1024-token row of ~170-token sessions that is ~6× the useful work, a third of a small
model's training time on a CPU. ``segments`` does what flash-attention's variable-length kernel does on a
GPU: it cuts the row at the session starts and runs causal ``scaled_dot_product_attention`` per session.
Results equal ``sdpa`` with the block mask (tests compare losses). Library only: importing
:mod:`training.train.model` registers it under the name :data:`SEGMENTS`.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

SEGMENTS = "segments"


def needs_single_row(attention: str) -> bool:
    """Flash-attention detects packed sessions only in a one-row batch (see :func:`training.train.packing.collate`)."""
    return attention.startswith("flash_attention")


def segment_starts(position_ids: torch.Tensor) -> list[int]:
    """Where the sessions of one row start: position 0 and wherever the positions do not count up by one."""
    return [0, *(torch.nonzero(torch.diff(position_ids) != 1).flatten() + 1).tolist()]


def segments_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,  # (batch, heads, length, head_dim)
    key: torch.Tensor,  # (batch, kv_heads, length, head_dim)
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids: torch.Tensor | None = None,
    **_kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal attention within each session of each row; returns (batch, length, heads, head_dim) like sdpa."""
    if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask.all()):
        raise ValueError("segments attention packs sessions by position_ids; it takes no padding mask")
    batch, _heads, length, _dim = query.shape
    if position_ids is None:
        position_ids = torch.arange(length, device=query.device).expand(batch, length)
    gqa = key.shape[1] != query.shape[1]
    dropout = dropout if module.training else 0.0
    rows = []
    for row in range(batch):
        positions = position_ids[row if position_ids.shape[0] > 1 else 0]
        bounds = [*segment_starts(positions), length]
        pieces = [
            F.scaled_dot_product_attention(
                query[row : row + 1, :, start:end],
                key[row : row + 1, :, start:end],
                value[row : row + 1, :, start:end],
                dropout_p=dropout,
                is_causal=True,
                scale=scaling,
                enable_gqa=gqa,
            )
            for start, end in itertools.pairwise(bounds)
        ]
        rows.append(torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0])
    output = torch.cat(rows, dim=0) if batch > 1 else rows[0]
    return output.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``attn_implementation="segments"`` known to transformers (idempotent)."""
    AttentionInterface.register(SEGMENTS, segments_attention_forward)
    # Like flash-attention, it needs no mask: position_ids carry the session boundaries.
    AttentionMaskInterface.register(SEGMENTS, flash_attention_mask)


register()
