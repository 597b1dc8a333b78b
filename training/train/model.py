"""Load the base model and tokenizer for training and wrap them for the chosen method.

* The tokenizer gets ``<|im_start|>``/``<|im_end|>`` as special tokens when it lacks them; the embeddings are
  then resized with mean initialisation (transformers' ``mean_resizing``), and under LoRA the new rows stay
  trainable through peft's trainable tokens, so the adapter file carries them.
* ``lora``: the frozen base in the compute dtype, peft adapters (fp32) on ``all-linear`` by default, which
  peft resolves per architecture (every linear layer but the output head).
* ``full``: fp32 master weights; bf16 on a GPU comes from autocast (accelerate's mixed precision).
* ``qlora``: the base quantized to 4-bit NF4 by bitsandbytes, CUDA only.

Importing it registers the ``segments`` attention (:mod:`training.train.attention`). Library only;
:mod:`training.train.loop` uses it.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from doppel.errors import InputError
from training.train.attention import SEGMENTS
from training.train.config import TrainConfig
from training.train.labels import add_chat_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """The dtype the model computes in, and the matching accelerate ``mixed_precision`` setting."""

    compute_dtype: torch.dtype
    mixed_precision: str  # "no" | "bf16" | "fp16"

    @property
    def bytes(self) -> int:
        return torch.finfo(self.compute_dtype).bits // 8


def choose_precision(requested: str, device: torch.device) -> Precision:
    """``auto`` is bf16 on a GPU that supports it, fp32 everywhere else (CPU training in bf16 is slower)."""
    if requested == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        requested = "bf16" if bf16 else "fp32"
    if requested == "fp16" and device.type != "cuda":
        raise InputError("--precision fp16 needs a CUDA GPU; use fp32 (or bf16) here")
    return {
        "fp32": Precision(torch.float32, "no"),
        "bf16": Precision(torch.bfloat16, "bf16"),
        "fp16": Precision(torch.float16, "fp16"),
    }[requested]


def choose_attention(requested: str, device: torch.device) -> str:
    """``auto``: flash-attention 2 on a GPU that has it installed, else ``sdpa`` (block-diagonal mask);
    on a CPU, :mod:`training.train.attention`'s per-session ``segments``."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        from transformers.utils import is_flash_attn_2_available

        return "flash_attention_2" if is_flash_attn_2_available() else "sdpa"
    return SEGMENTS


def check_method_supported(method: str, device: torch.device, attn_implementation: str) -> None:
    """Fail early, before anything heavy, on a method or kernel this machine cannot run."""
    if method == "qlora":
        if device.type != "cuda":
            raise InputError(
                f"--method qlora needs a CUDA GPU (bitsandbytes 4-bit); this machine trains on "
                f"{device.type}: "
                "use --method lora"
            )
        from transformers.utils import is_bitsandbytes_available

        if not is_bitsandbytes_available():
            raise InputError("--method qlora needs bitsandbytes: pip install bitsandbytes")
    if attn_implementation == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            raise InputError("--attn-implementation flash_attention_2 needs flash-attn: pip install flash-attn")


def load_tokenizer(hf_dir: Path) -> tuple[PreTrainedTokenizerBase, list[dict[str, Any]]]:
    """The base's tokenizer with the ChatML tokens present; also the tokens added (``[{content, id}]``)."""
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    added = add_chat_tokens(tokenizer)
    added_tokens = [{"content": token, "id": tokenizer.convert_tokens_to_ids(token)} for token in added]
    if added:
        log.info("added %s to the tokenizer", ", ".join(added))
    return tokenizer, added_tokens


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """Any id will do for padding (its labels are ignored and it sits in its own attention block)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def load_model(
    hf_dir: Path,
    config: TrainConfig,
    tokenizer: PreTrainedTokenizerBase,
    added_tokens: list[dict[str, Any]],
    *,
    precision: Precision,
    device_map: dict[str, Any] | None,
    attention: str,
) -> torch.nn.Module:
    """The model ready for the optimizer: resized for added tokens, wrapped by peft for (q)lora."""
    kwargs: dict[str, Any] = {"attn_implementation": attention}
    if config.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=precision.compute_dtype,
        )
        kwargs["dtype"] = precision.compute_dtype
    elif config.method == "lora":
        kwargs["dtype"] = precision.compute_dtype  # frozen: no fp32 master copy needed
    else:
        kwargs["dtype"] = torch.float32  # trained: fp32 master weights, autocast computes in bf16
    if device_map is not None:
        kwargs["device_map"] = device_map
    model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(hf_dir, **kwargs)
    model.config.use_cache = False  # a cache also switches off transformers' packed-sequence masking
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    if config.method == "full":
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model
    return wrap_lora(model, config, [token["id"] for token in added_tokens])


def wrap_lora(model: PreTrainedModel, config: TrainConfig, new_token_ids: list[int]) -> torch.nn.Module:
    """Add LoRA adapters (and trainable rows for added tokens) to a loaded model."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    targets: str | list[str] = (
        "all-linear" if "all-linear" in config.lora_target_modules else list(config.lora_target_modules)
    )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        trainable_token_indices=_trainable_token_indices(model, new_token_ids) if new_token_ids else None,
    )
    try:
        with warnings.catch_warnings():
            # peft 0.21 asks transformers 5.23 a deprecated question; nothing for a user to act on.
            warnings.filterwarnings(
                "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
            )
            return get_peft_model(model, lora)
    except ValueError as error:  # e.g. a target module name that the architecture does not have
        raise InputError(f"--lora-target-modules: {str(error).splitlines()[0]}") from None


def _trainable_token_indices(model: PreTrainedModel, token_ids: list[int]) -> dict[str, list[int]]:
    """Where the added tokens' rows live: the input embedding, and the output head unless tied to it."""
    names = {id(module): name for name, module in model.named_modules()}
    layers = {names[id(model.get_input_embeddings())].rsplit(".", 1)[-1]: list(token_ids)}
    output = model.get_output_embeddings()
    if output is not None and not model.config.get_text_config().tie_word_embeddings:
        layers[names[id(output)].rsplit(".", 1)[-1]] = list(token_ids)
    return layers


def count_trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total): the parameters of a loaded model that require gradients, and all of them."""
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in model.parameters())
    return trainable, total
