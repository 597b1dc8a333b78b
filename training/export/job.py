"""One export in progress: its checked inputs, its scratch folder, and the steps both kinds of export share.

Those steps: loading the trained model and recording its predictions on the validation sessions, writing
doppel's metadata into a converted file, verifying the f16 file, quantizing, and measuring what the quantization
costs. The two kinds of export put them in order: :func:`training.export.pipeline.export_model` (one merged
GGUF) and :func:`training.export.adapter.export_adapter` (``--adapter-only``). Library only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doppel.formats.gguf_metadata import write_with_metadata
from training.export.config import ExportConfig
from training.export.convert import ConverterSources
from training.export.merge import load_trained
from training.export.quantize import F16, quantize
from training.export.run import ExportableRun, build_metadata
from training.export.verify import (
    Agreement,
    Predictions,
    QuantCost,
    encode_sessions,
    hf_predictions,
    quant_cost,
    verify_f16,
)

log = logging.getLogger(__name__)


class Progress:
    """Numbered progress lines at INFO."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0

    def step(self, message: str, *args: Any) -> None:
        self.index += 1
        log.info(f"[{self.index}/{self.total}] {message}", *args)


@dataclass
class ExportJob:
    """The steps of one export, sharing the scratch directory and what earlier steps produced."""

    settings: ExportConfig
    out: Path  # absolute
    run: ExportableRun
    sources: ConverterSources
    checkpoint: Path  # the HF checkpoint converted: the full fine-tune, or the base of a LoRA run
    texts: list[str]  # the validation sessions to verify on (none with --no-verify)
    scratch: Path
    sessions: list[list[int]] = field(default_factory=list)  # the texts as token ids, once a tokenizer is loaded
    reference: Predictions | None = None  # the trained model's predictions on the sessions

    @property
    def quant(self) -> str:
        return self.settings.quant

    @property
    def verify(self) -> bool:
        return self.settings.verify

    def load_reference(self) -> tuple[Any, Any]:
        """The trained model and tokenizer; with verification, its predictions recorded on the sessions."""
        model, tokenizer = load_trained(self.run)
        if self.verify:
            self.sessions = encode_sessions(tokenizer, self.texts, self.settings.verify_max_tokens)
            self.reference = hf_predictions(model, self.sessions)
        return model, tokenizer

    def with_metadata(
        self, raw: Path, target: Path, role: str, stop_id: int | None = None, base_file: str | None = None
    ) -> Path:
        """``raw`` as the converter wrote it, copied to ``target`` with doppel's metadata of ``role``; ``raw``
        is deleted (the scratch space must hold only two full-size files at a time)."""
        metadata = build_metadata(self.run, role, converter=self.sources.name, base_file=base_file)
        write_with_metadata(raw, target, metadata, stop_id)
        raw.unlink()
        return target

    def verify_f16(self, tokenizer: Any, f16: Path, lora: Path | None = None) -> tuple[Agreement, Predictions]:
        assert self.reference is not None
        return verify_f16(f16, tokenizer, self.texts, self.sessions, self.reference, lora_path=lora)

    def quantized(self, f16: Path, target: Path) -> Path:
        """The f16 file at ``--quant``: ``target``, or the f16 file itself for f16."""
        if self.quant == F16:
            return f16
        quantize(f16, target, self.quant)
        return target

    def measure_cost(
        self, quantized: Path, f16_predictions: Predictions | None, lora: Path | None = None
    ) -> QuantCost | None:
        """The quantization's perplexity change against the f16 file (None unverified, or at f16), logged."""
        if f16_predictions is None or self.quant == F16:
            return None
        cost = quant_cost(self.quant, quantized, f16_predictions, self.sessions, lora_path=lora)
        log.info("%s", cost.describe())
        advice = cost.advice()
        if advice is not None:
            log.warning("%s", advice)
        return cost
