"""The run's batch plan: its epochs in order, grouped into optimizer steps, a pure function of the settings."""

from __future__ import annotations

import random
from pathlib import Path

from training.train.config import TrainConfig
from training.train.data import plan_steps
from training.train.packing import plan_epoch


def test_a_run_is_its_epochs_in_order_grouped_into_steps() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(5, 90) for _ in range(100)]
    config = TrainConfig(dataset=Path("DATA"), out=Path("RUN"), epochs=2, seq_len=128, rows_per_batch=2, seed=5)
    steps = plan_steps(lengths, config, per_step=3, drop_last=False)
    assert [batch for step in steps for batch in step] == plan_epoch(lengths, 128, 2, 5, 0) + plan_epoch(
        lengths, 128, 2, 5, 1
    )
    assert all(len(step) == 3 for step in steps[:-1])
    assert steps == plan_steps(lengths, config, per_step=3, drop_last=False)
