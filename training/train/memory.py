"""Estimate, before loading any weights, whether a training run fits in memory.

The count of parameters comes from the model's config (the model is built on the ``meta`` device, which
allocates nothing). Bytes per parameter by method, with AdamW:

* full: fp32 weights + fp32 gradients + two fp32 Adam moments = 16 bytes (mixed precision keeps fp32 master
  weights), divided across processes under FSDP;
* lora: the frozen base in the compute dtype (4 bytes fp32, 2 bf16) + 16 bytes per adapter parameter;
* qlora: ~0.56 bytes per base parameter (4-bit NF4 + block scales) + the adapter.

Activations are estimated per token and layer for a micro-batch (stored layer inputs only, with gradient
checkpointing), plus the logits that the loss needs in fp32. It is an estimate meant to catch the hopeless
cases early ("a 7B full fine-tune on a 24 GB card"); ``--max-memory-gb`` overrides what is considered free.
Library only; :mod:`training.train.loop` calls :func:`check_run_fits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from doppel.errors import InputError
from training.train.config import TrainConfig

GIB = 1024**3
_ADAM_TRAINABLE_BYTES = 16  # fp32 weight + gradient + two moments
_QLORA_BYTES_PER_PARAM = 0.56
_LOGIT_COPIES = 3  # logits, their fp32 upcast in the loss, and its gradient


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs on one device, by part."""

    n_params: int
    n_trainable: int
    weights: int
    training_state: int  # gradients + optimizer moments (+ master weights) of what trains
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.training_state + self.activations

    def describe(self) -> str:
        return (
            f"~{self.total / GIB:.1f} GiB ({self.n_params / 1e6:.0f}M parameters: weights "
            f"{self.weights / GIB:.1f}, gradients+optimizer {self.training_state / GIB:.1f}, "
            f"activations {self.activations / GIB:.1f})"
        )


def estimate_parameters(config: PretrainedConfig) -> int:
    """Parameters of the model a config describes, without allocating them."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(parameter.numel() for parameter in model.parameters())


def lora_parameter_count(config: PretrainedConfig, rank: int, target_modules: list[str]) -> int:
    """Parameters LoRA adds: ``rank * (in + out)`` for every adapted linear layer."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    output = model.get_output_embeddings()
    total = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is output:
            continue
        if "all-linear" in target_modules or name.rsplit(".", 1)[-1] in target_modules:
            total += rank * (module.in_features + module.out_features)
    return total


def estimate_memory(
    config: PretrainedConfig,
    method: str,
    *,
    compute_bytes: int,
    tokens_per_micro_batch: int,
    gradient_checkpointing: bool,
    lora_rank: int,
    lora_targets: list[str],
    shards: int = 1,
) -> MemoryEstimate:
    """What one device needs for this run (``shards`` > 1 for FSDP, which splits the full-method state)."""
    text_config = config.get_text_config()
    n_params = estimate_parameters(config)
    if method == "full":
        n_trainable = n_params
        weights = n_params * 4 // shards  # fp32 master weights
        training_state = n_params * (_ADAM_TRAINABLE_BYTES - 4) // shards
    else:
        n_trainable = lora_parameter_count(config, lora_rank, lora_targets)
        per_param = _QLORA_BYTES_PER_PARAM if method == "qlora" else compute_bytes
        weights = int(n_params * per_param)
        training_state = n_trainable * _ADAM_TRAINABLE_BYTES
    hidden = int(text_config.hidden_size)
    intermediate = int(getattr(text_config, "intermediate_size", None) or 4 * hidden)
    layers = int(text_config.num_hidden_layers)
    vocab = int(text_config.vocab_size)
    # Per token and layer: attention in/out, q/k/v, norms (~10 hidden-sized tensors) and the gated MLP's
    # intermediate tensors (~4), in the compute dtype. Flash/sdpa kernels keep no attention matrix.
    per_layer = compute_bytes * (10 * hidden + 4 * intermediate)
    # With checkpointing only each layer's input is kept, plus one layer's worth while it is recomputed.
    per_token = layers * hidden * compute_bytes + per_layer if gradient_checkpointing else layers * per_layer
    per_token += vocab * 4 * _LOGIT_COPIES
    return MemoryEstimate(
        n_params=n_params,
        n_trainable=n_trainable,
        weights=weights,
        training_state=training_state,
        activations=per_token * tokens_per_micro_batch,
    )


def free_memory(device: torch.device) -> int:
    """Bytes free on the device the run trains on (GPU memory, or RAM for the CPU)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def check_memory(estimate: MemoryEstimate, available: int, method: str, where: str) -> None:
    """Refuse a run that cannot fit, with what it needs and what to change (one line)."""
    if estimate.total <= available:
        return
    advice = {
        "full": "try --method lora, more GPUs with FSDP, or a smaller --seq-len",
        "lora": "try --method qlora on a GPU, --gradient-checkpointing, or a smaller --seq-len",
        "qlora": "try --gradient-checkpointing or a smaller --seq-len",
    }[method]
    raise InputError(
        f"--method {method} needs {estimate.describe()}, but {where} has {available / GIB:.1f} GiB free; {advice}"
    )


def check_run_fits(
    hf_dir: Path, config: TrainConfig, *, compute_bytes: int, device: torch.device, shards: int
) -> tuple[MemoryEstimate, int]:
    """Estimate the run from the base's ``config.json`` and refuse it if it cannot fit.

    Returns the estimate and the bytes considered available (``--max-memory-gb``, else what ``device`` has free).
    """
    estimate = estimate_memory(
        AutoConfig.from_pretrained(hf_dir),
        config.method,
        compute_bytes=compute_bytes,
        tokens_per_micro_batch=config.seq_len * config.rows_per_batch,
        gradient_checkpointing=config.gradient_checkpointing,
        lora_rank=config.lora_r,
        lora_targets=config.lora_target_modules,
        shards=shards,
    )
    available = int(config.max_memory_gb * GIB) if config.max_memory_gb else free_memory(device)
    where = "--max-memory-gb" if config.max_memory_gb else f"this {device.type}"
    check_memory(estimate, available, config.method, where)
    return estimate, available
