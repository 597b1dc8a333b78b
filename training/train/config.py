"""The one settings schema of ``doppel train``: every field is a command-line flag and a YAML key.

Precedence, lowest first: the defaults here, the run's own ``config.yaml`` when resuming, ``--config FILE``,
then flags given on the command line. A run directory keeps the resolved config (``config.yaml``), which
loads back to an equal :class:`TrainConfig`. Library only; the flags are built from the schema by
:mod:`doppel.settings`, the one settings pattern of every stage, in :mod:`training.train.cli`::

    doppel train DATASET --out RUN --config configs/train/cpu-demo.yaml --max-steps 20
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from doppel.settings import Cli, StageSettings, flag_name
from training.train.base_model import DEFAULT_BASE
from training.train.labels import LossScope

Method = Literal["lora", "full", "qlora"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Scheduler = Literal["cosine", "linear", "constant"]

DEFAULT_LEARNING_RATE: dict[str, float] = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}
"""LoRA trains a few fresh matrices and takes a large step; full fine-tuning moves pretrained weights and
needs a small one."""

RESUME_MAY_CHANGE = frozenset({"resume", "eval_every", "save_every", "keep_checkpoints", "max_memory_gb"})
"""Fields a resumed run may change: none of them alters the data order, the model or the schedule."""


class TrainConfig(StageSettings):
    """Settings of one training run. ``description`` doubles as the ``--help`` text of each flag."""

    dataset: Annotated[Path, Cli(positional="?", metavar="DATASET")] = Field(
        description="dataset directory written by `doppel prepare`"
    )
    out: Annotated[Path, Cli(metavar="RUN")] = Field(
        description="run directory to create (or continue, with --resume); required"
    )
    base: Annotated[str, Cli(metavar="ID_OR_PATH")] = Field(
        DEFAULT_BASE,
        description="base model: a GGUF file, an HF checkpoint directory, an HF hub id, or package/file.gguf",
    )
    method: Method = Field("lora", description="lora: small adapter; full: all weights; qlora: 4-bit base, CUDA only")
    loss_scope: Annotated[str, Cli(metavar="SCOPE")] = Field(
        "all", description="whose turns are supervised: all | owner | personas:NAME,NAME (headers never are)"
    )
    epochs: int = Field(1, ge=1, description="passes over the training split")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    seq_len: int = Field(2048, ge=16, description="tokens per packed row; a longer session gets a row of its own")
    rows_per_batch: int = Field(1, ge=1, description="packed rows per micro-batch (more uses the GPU better)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    learning_rate: Annotated[float | None, Cli(metavar="LR")] = Field(
        None, gt=0, description="peak learning rate (default: 2e-4 for lora/qlora, 2e-5 for full)"
    )
    lr_scheduler: Scheduler = Field("cosine", description="learning-rate decay after warm-up")
    warmup_ratio: Annotated[float, Cli(metavar="FRACTION")] = Field(
        0.05, ge=0, le=1, description="fraction of the steps spent warming up"
    )
    weight_decay: Annotated[float, Cli(metavar="X")] = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: Annotated[float, Cli(metavar="X")] = Field(1.0, gt=0, description="clip the gradient norm to this")
    lora_r: int = Field(16, ge=1, description="LoRA rank: higher learns more, costs more memory")
    lora_alpha: int = Field(32, ge=1, description="LoRA scale numerator (the update is scaled by alpha/r)")
    lora_dropout: Annotated[float, Cli(metavar="P")] = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    lora_target_modules: Annotated[list[str], Cli(metavar="NAMES")] = Field(
        ["all-linear"],
        description="comma-separated module names to adapt; all-linear: every linear layer but the head",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward: less memory, about a third slower"
    )
    precision: Precision = Field("auto", description="auto: bf16 on GPUs that support it, else fp32")
    attn_implementation: Annotated[str, Cli(metavar="KERNEL")] = Field(
        "auto",
        description="attention kernel: auto (flash_attention_2 if installed, else sdpa; segments on a CPU) "
        "| sdpa | eager | segments | flash_attention_2",
    )
    eval_every: int = Field(50, ge=1, description="validation loss every N steps (and at the start and the end)")
    save_every: int = Field(100, ge=1, description="checkpoint every N steps (and at the end)")
    keep_checkpoints: int = Field(2, ge=1, description="how many of the latest checkpoints to keep")
    seed: int = Field(0, description="seed for data order, LoRA init and dropout")
    resume: bool = Field(False, description="continue the run in --out from its latest checkpoint")
    max_memory_gb: Annotated[float | None, Cli(metavar="GB")] = Field(
        None, gt=0, description="memory the run may use (default: what the device has free); checked up front"
    )

    @field_validator("loss_scope")
    @classmethod
    def _check_scope(cls, value: str) -> str:
        return str(LossScope.parse(value))

    @field_validator("lora_target_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @property
    def scope(self) -> LossScope:
        return LossScope.parse(self.loss_scope)

    def resolved(self) -> TrainConfig:
        """The same settings with every "default" spelled out, as a run directory records them."""
        return self.model_copy(
            update={
                "dataset": self.dataset.expanduser().resolve(),
                "out": self.out.expanduser().resolve(),
                "learning_rate": self.learning_rate or DEFAULT_LEARNING_RATE[self.method],
            }
        )


def resume_conflicts(saved: TrainConfig, requested: TrainConfig) -> list[str]:
    """Settings that differ between a run and its continuation, beyond those a resume may change."""
    old, new = saved.resolved().model_dump(mode="json"), requested.resolved().model_dump(mode="json")
    return [
        f"{flag_name(TrainConfig, name)} ({old[name]!r} in the run, {new[name]!r} now)"
        for name in TrainConfig.model_fields
        if name not in RESUME_MAY_CHANGE and old[name] != new[name]
    ]
