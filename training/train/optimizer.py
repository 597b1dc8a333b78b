"""The optimizer and learning-rate schedule of a run: AdamW over the trainable parameters, warm-up then decay.

Library only; :mod:`training.train.loop` uses it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from training.train.config import TrainConfig

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
"""``--lr-scheduler`` → the name transformers' ``get_scheduler`` knows it by."""


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the parameters that train (the adapters under LoRA, everything under full fine-tuning)."""
    return torch.optim.AdamW(
        [parameter for parameter in model.parameters() if parameter.requires_grad],
        lr=config.learning_rate or 0.0,
        weight_decay=config.weight_decay,
    )


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """Warm-up over ``warmup_ratio`` of the steps, then ``--lr-scheduler``'s decay; stepped once per step."""
    from transformers import get_scheduler

    return get_scheduler(
        SCHEDULERS[config.lr_scheduler],
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
