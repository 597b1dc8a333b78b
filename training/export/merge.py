"""The trained model as transformers sees it: the base with the LoRA merged in, or the fully fine-tuned weights.

This is the reference the GGUF file is checked against, and (for LoRA) the checkpoint it is converted from.
Library only; the export's steps (:mod:`training.export.job`) use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import warnings
from pathlib import Path
from typing import Any

from doppel.chatml import IM_END
from doppel.errors import InputError
from training.export.run import ExportableRun, base_checkpoint

log = logging.getLogger(__name__)


def load_tokenizer(run: ExportableRun) -> Any:
    """The tokenizer the run trained with (saved beside its model)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(run.model_dir)


def stop_token_id(tokenizer: Any, run: ExportableRun) -> int:
    """The id of ``<|im_end|>``, where every turn ends and generation must stop."""
    token_id = tokenizer.convert_tokens_to_ids(IM_END)
    if token_id is None or token_id == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(token_id) != IM_END:
        raise InputError(f"{run.model_dir}: the tokenizer has no {IM_END} token; was this model trained by doppel?")
    return int(token_id)


def load_trained(run: ExportableRun) -> tuple[Any, Any]:
    """(model, tokenizer): the merged LoRA model, or the full fine-tune, ready for inference on CPU or GPU."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(run)
    placement: dict[str, Any] = {"device_map": "cuda"} if torch.cuda.is_available() else {}
    if not run.is_adapter:
        model = AutoModelForCausalLM.from_pretrained(run.model_dir, dtype="auto", **placement)
        return model.eval(), tokenizer
    from peft import PeftModel

    # The checkpoint's own dtype: fp32 for a small de-quantized base, bf16 for a large one. A QLoRA run's
    # adapter is merged into the full-precision base, as is usual (the 4-bit base was only a training aid).
    base = AutoModelForCausalLM.from_pretrained(base_checkpoint(run), dtype="auto", **placement)
    if run.added_tokens:
        if run.vocab_size is None:
            raise InputError(f"{run.path / 'run.json'}: added_tokens without vocab_size")
        base.resize_token_embeddings(run.vocab_size)
    with warnings.catch_warnings():
        # peft 0.21 asks transformers 5.23 a deprecated question; nothing for a user to act on.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        tuned = PeftModel.from_pretrained(base, run.model_dir)
    merged = tuned.merge_and_unload()
    return merged.eval(), tokenizer


def save_merged(model: Any, tokenizer: Any, target: Path) -> None:
    """Write the merged model + tokenizer as a plain HF checkpoint for llama.cpp's converter."""
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def release_memory() -> None:
    """Collect, then hand freed heap back to the OS: glibc keeps it otherwise, and the converter subprocess
    and llama.cpp's mapping of the f16 file would come on top of a model that is gone."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
