"""The training loss of a packed batch, computing logits only where a token is supervised.

The output head and the cross-entropy over the vocabulary (49k for SmolLM2, 152k for Qwen2.5) are a large
share of a small model's compute and of any model's activation memory. transformers' ``logits_to_keep``
takes a boolean mask of positions; we keep exactly the positions whose *next* token is supervised, so
headers, separators, padding and out-of-scope speakers never reach the head. The value equals the model's
own ``labels=`` loss (tests pin it). Library only; :mod:`training.train.loop`, :mod:`training.train.evaluation`
and ``bench/bench_train.py`` use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

from training.train.labels import IGNORE_INDEX
from training.train.packing import PackedBatch


def supervised_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, targets): ``keep[r, t]`` is True when position t predicts a supervised token; ``targets`` are
    those tokens, in the order ``hidden_states[keep]`` flattens them."""
    following = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = following != IGNORE_INDEX
    return keep, following[following != IGNORE_INDEX]


def packed_loss(
    model: torch.nn.Module, batch: PackedBatch, device: torch.device | str, num_items: float | None = None
) -> torch.Tensor:
    """Sum of the batch's token losses divided by ``num_items`` (default: its own supervised count).

    Pass the supervised count of the whole optimizer step (over micro-batches and processes) as
    ``num_items`` so that every token weighs the same however the step is split.
    """
    keep, targets = supervised_positions(batch.labels)
    empty = targets.numel() == 0
    if empty:
        # e.g. --loss-scope owner and a batch of friends only. Keep one position, weighted 0, so every
        # trainable weight still gets a (zero) gradient: DDP waits for all of them.
        keep[0, 0] = True
    output = model(
        input_ids=batch.input_ids.to(device),
        position_ids=batch.position_ids.to(device),
        logits_to_keep=keep.to(device),
        use_cache=False,  # a cache would switch off the packed-sequence (block-diagonal) masking
    )
    logits = output.logits.reshape(-1, output.logits.shape[-1])
    if empty:
        return logits.float().sum() * 0.0
    total = F.cross_entropy(logits.float(), targets.to(device), reduction="sum")
    return total / (num_items if num_items is not None else max(batch.n_supervised, 1))
