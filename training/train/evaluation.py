"""Validation loss: the mean loss per supervised token over the validation batches, all processes together.

Computed exactly as the training loss is (:func:`training.train.loss.packed_loss` on packed batches), so the
two curves in ``loss.png`` are comparable. Library only; :mod:`training.train.loop` calls :func:`evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from training.train.loss import packed_loss
from training.train.packing import PackedBatch


def evaluate(model: torch.nn.Module, batches: Sequence[PackedBatch], accelerator: Any) -> float:
    """Mean loss per supervised token over the batches, all processes together.

    Every process runs the same number of forward passes (a spare one repeats a batch with weight 0),
    because FSDP gathers weights collectively.
    """
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    world, rank = accelerator.num_processes, accelerator.process_index
    with torch.no_grad():
        for round_start in range(0, len(batches), world):
            index = round_start + rank
            batch = batches[index] if index < len(batches) else batches[0]
            weight = 1.0 if index < len(batches) else 0.0
            loss_sum = packed_loss(model, batch, accelerator.device, num_items=1.0)
            totals[0] += loss_sum.double() * weight
            totals[1] += batch.n_supervised * weight
    totals = accelerator.reduce(totals, reduction="sum")
    model.train()
    return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")
