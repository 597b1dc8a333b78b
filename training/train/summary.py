"""What a finished training run reports: :class:`RunSummary`, and the line ``doppel train`` prints for it.

Library only; :func:`training.train.loop.train` returns one and :mod:`training.train.cli` prints
:meth:`RunSummary.describe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports."""

    run_dir: Path
    model_dir: Path
    method: str
    steps: int
    tokens: int  # real (non-padding) tokens trained on, all processes, resumed parts included
    seconds: float  # training time, resumed parts included
    first_val_loss: float | None
    best_val_loss: float | None
    final_val_loss: float | None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        def loss(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        minutes, seconds = divmod(round(self.seconds), 60)
        return (
            f"trained {self.method} for {self.steps} steps in {minutes}m{seconds:02d}s: "
            f"{self.tokens:,} tokens "
            f"({self.tokens_per_second:,.0f}/s); validation loss {loss(self.first_val_loss)} → "
            f"{loss(self.final_val_loss)} (best {loss(self.best_val_loss)}); model in {self.model_dir}"
        )
