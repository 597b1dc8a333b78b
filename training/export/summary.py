"""What one export wrote and measured, and the lines ``doppel export`` prints about it.

Library only: :func:`training.export.pipeline.export` returns an :class:`ExportSummary`, and the CLI prints
its :meth:`ExportSummary.describe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy comes with them; a summary alone needs neither
    from training.export.verify import Agreement, QuantCost


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote and measured."""

    out: Path  # the model, or with --adapter-only the adapter
    quant: str
    base_gguf: Path | None  # --adapter-only: the base GGUF beside the adapter
    base_reused: bool
    checkpoint_bytes: int  # the HF weights converted (merged model, full fine-tune, or the base)
    f16_bytes: int  # the f16 GGUF of the model (or of the base)
    quantized_bytes: int  # the model (or base) at --quant
    adapter_bytes: int | None
    agreement: Agreement | None
    cost: QuantCost | None
    seconds: float

    @property
    def compression(self) -> float:
        """How many times smaller than the f16 GGUF the quantized model is."""
        return self.f16_bytes / self.quantized_bytes if self.quantized_bytes else float("nan")

    def describe(self) -> str:
        """The summary ``doppel export`` prints: the files, their sizes, the verification, the time."""
        minutes, seconds = divmod(round(self.seconds), 60)
        lines = []
        if self.base_gguf is not None:
            reused = " (kept from an earlier export)" if self.base_reused else ""
            lines.append(f"adapter {self.out} ({_size(self.adapter_bytes or 0)})")
            lines.append(f"base    {self.base_gguf} ({_size(self.quantized_bytes)}, {self.quant}){reused}")
        else:
            lines.append(f"model   {self.out} ({_size(self.quantized_bytes)}, {self.quant})")
        lines.append(
            f"size    HF checkpoint {_size(self.checkpoint_bytes)} → f16 {_size(self.f16_bytes)} → "
            f"{self.quant} {_size(self.quantized_bytes)} ({self.compression:.2f}× smaller than f16)"
        )
        if self.agreement is not None:
            lines.append(f"verify  f16 vs trained model: {self.agreement.describe()}")
        else:
            lines.append("verify  skipped (--no-verify)")
        if self.cost is not None:
            lines.append(f"quant   {self.cost.describe()}")
            advice = self.cost.advice()
            if advice is not None:
                lines.append(f"warning {advice}")
        lines.append(f"time    {minutes}m{seconds:02d}s")
        return "\n".join(lines)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
