"""The loss curve of a run (``RUN/loss.png``): training loss, raw and smoothed, and validation loss by step."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def plot_loss(records: Iterable[dict[str, Any]], path: Path, title: str) -> None:
    """Draw training loss (raw and smoothed) and validation loss against the step into ``path`` (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; also keeps tests and servers headless
    import matplotlib.pyplot as plt

    records = list(records)
    train = [(record["step"], record["loss"]) for record in records if "loss" in record]
    val = [(record["step"], record["val_loss"]) for record in records if "val_loss" in record]
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        steps, losses = zip(*train, strict=True)
        axes.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=1, label="train")
        axes.plot(steps, _smooth(losses), color="tab:blue", linewidth=2, label="train (smoothed)")
    if val:
        steps, losses = zip(*val, strict=True)
        axes.plot(steps, losses, color="tab:orange", marker="o", linewidth=2, label="validation")
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per supervised token)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    scratch = path.with_name(f".tmp-{path.name}")  # a reader never sees half an image
    figure.savefig(scratch, format="png")
    plt.close(figure)
    scratch.replace(path)


def _smooth(values: Iterable[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average with bias correction, as TensorBoard smooths curves."""
    smoothed, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**count))
    return smoothed
