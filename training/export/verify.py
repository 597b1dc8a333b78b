"""Check that a GGUF file is the trained model: same tokens, same next-token predictions, known quantization cost.

On a few validation sessions (the ChatML text the model never trained on):

1. llama.cpp tokenizes the text exactly as the trained tokenizer does;
2. the f16 GGUF's next-token distribution matches the HF model's: the top-1 token agrees at ≥ 99% of the
   positions (two tokens within 0.05 nats of each other that f16 rounding swaps are a near-tie, not a
   disagreement), and the largest |Δ log-prob| (of the text's next token and of the HF top-1) is reported;
3. the chosen quantization's perplexity is compared with the f16 file's.

A failed check raises :class:`VerificationError`: a wrong conversion (a mis-permuted attention weight, a
wrong tokenizer, a dropped adapter) must not pass as a model. ``doppel export`` runs this unless ``--no-verify``;
to check a file by hand::

    python -m training.export.verify RUN MODEL.gguf [--adapter ADAPTER.gguf]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doppel.llama_loader import open_llama
from doppel.system import usable_cpus
from training.export.config import DEFAULT_MAX_TOKENS, DEFAULT_SESSIONS

log = logging.getLogger(__name__)

MIN_TOP1_AGREEMENT = 0.99
TIE_MARGIN = 0.05
"""Nats. Where the reference's top two tokens are closer than this, f16 rounding may swap them: such a swap
counts as a near-tie, not a disagreement (about 1 position in 300 on SmolLM2)."""
COSTLY_PERPLEXITY_CHANGE = 0.20
"""A quantization that raises perplexity by more than this earns a warning. On small models whose widths are not
multiples of 256 llama.cpp swaps k-quants for older types, and the result can be far worse than the name suggests
(SmolLM2-135M: q5_k_m +48%, q4_k_m +5%)."""


class VerificationError(RuntimeError):
    """The GGUF file does not behave like the model it was converted from."""


@dataclass(frozen=True)
class Predictions:
    """A model's predictions at every position of the sessions, concatenated.

    ``top1``: its most likely next token; ``target``: log p(the text's actual next token);
    ``best``: log p(its own top-1), ``second``/``margin``: its runner-up token and how far behind it is;
    ``at_reference``: log p(the reference model's top-1), when one was given.
    """

    top1: np.ndarray
    target: np.ndarray
    best: np.ndarray | None = None
    second: np.ndarray | None = None
    margin: np.ndarray | None = None
    at_reference: np.ndarray | None = None

    @property
    def positions(self) -> int:
        return len(self.target)

    @property
    def perplexity(self) -> float:
        return float(math.exp(-float(np.mean(self.target)))) if self.positions else float("nan")


@dataclass(frozen=True)
class Agreement:
    """How closely a GGUF file follows the reference model."""

    sessions: int
    positions: int
    top1_agreement: float
    near_ties: int  # disagreements where the reference's top two were within TIE_MARGIN, and swapped
    max_abs_dlogprob: float
    mean_abs_dlogprob: float
    reference_perplexity: float
    perplexity: float

    @property
    def agreement_with_ties(self) -> float:
        """Top-1 agreement counting near-ties as agreeing: what must reach :data:`MIN_TOP1_AGREEMENT`."""
        return self.top1_agreement + self.near_ties / self.positions if self.positions else 0.0

    @property
    def passed(self) -> bool:
        finite = math.isfinite(self.max_abs_dlogprob) and math.isfinite(self.perplexity)
        return finite and self.agreement_with_ties >= MIN_TOP1_AGREEMENT

    def describe(self) -> str:
        ties = f" ({self.near_ties} near-tie{'s' if self.near_ties != 1 else ''} swapped)" if self.near_ties else ""
        return (
            f"top-1 agreement {self.top1_agreement:.2%}{ties} over {self.positions:,} positions of "
            f"{self.sessions} sessions, max |Δ log-prob| {self.max_abs_dlogprob:.4f} "
            f"(mean {self.mean_abs_dlogprob:.5f}), perplexity {self.reference_perplexity:.3f} → {self.perplexity:.3f}"
        )


@dataclass(frozen=True)
class QuantCost:
    """Perplexity of the chosen quantization against the f16 file, on the same sessions."""

    quant: str
    f16_perplexity: float
    perplexity: float
    top1_agreement: float  # with the f16 file

    @property
    def change(self) -> float:
        """Relative perplexity change, e.g. 0.012 for +1.2%."""
        return self.perplexity / self.f16_perplexity - 1.0

    @property
    def costly(self) -> bool:
        return not self.change <= COSTLY_PERPLEXITY_CHANGE  # NaN (a broken file) is costly too

    def advice(self) -> str | None:
        """A one-line warning when this quantization costs much more than usual, else None."""
        if not self.costly:
            return None
        return (
            f"{self.quant} raises perplexity by {self.change:+.0%} against f16 on this model; "
            "try another --quant (q8_0 or q4_k_m) and compare"
        )

    def describe(self) -> str:
        return (
            f"{self.quant} perplexity {self.perplexity:.3f} vs f16 {self.f16_perplexity:.3f} ({self.change:+.2%}), "
            f"top-1 agreement with f16 {self.top1_agreement:.2%}"
        )


def validation_texts(dataset_path: Path, max_sessions: int = DEFAULT_SESSIONS) -> list[str]:
    """The ChatML text of the first ``max_sessions`` validation sessions (the split's own, stable order)."""
    from doppel.formats.dataset import load_prepared

    split = load_prepared(dataset_path).splits["validation"]
    count = min(max_sessions, len(split)) if max_sessions > 0 else len(split)
    return [str(text) for text in split.select(range(count))["text"]]


def encode_sessions(tokenizer: Any, texts: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS) -> list[list[int]]:
    """Token ids of each text as the model sees it (with the tokenizer's own BOS, if any), truncated."""
    sessions = []
    for text in texts:
        ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])[:max_tokens]
        if len(ids) >= 2:
            sessions.append(ids)
    if not sessions:
        raise VerificationError("no validation session has two tokens to compare predictions on")
    return sessions


def load_llama(model_path: Path, *, n_ctx: int, lora_path: Path | None = None) -> Any:
    """A quiet llama-cpp-python model that keeps the logits of every position, optionally with a LoRA adapter."""
    return open_llama(
        model_path,
        lora_path=lora_path,
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        n_threads=usable_cpus(),
        n_threads_batch=usable_cpus(),
        logits_all=True,
        seed=0,
        verbose=False,
    )


def context_size(sessions: Sequence[Sequence[int]]) -> int:
    """A context that fits the longest session: a multiple of 64, as llama.cpp pads its KV cache to that."""
    longest = max(len(ids) for ids in sessions)
    return max(64, -(-longest // 64) * 64)


def gguf_predictions(
    model_path: Path,
    sessions: Sequence[Sequence[int]],
    *,
    lora_path: Path | None = None,
    reference_top1: np.ndarray | None = None,
) -> Predictions:
    """llama.cpp's predictions for the same token ids as the reference (see :func:`llama_predictions`)."""
    llm = load_llama(model_path, n_ctx=context_size(sessions), lora_path=lora_path)
    try:
        return llama_predictions(llm, sessions, reference_top1=reference_top1)
    finally:
        llm.close()


def llama_predictions(
    llm: Any, sessions: Sequence[Sequence[int]], *, reference_top1: np.ndarray | None = None
) -> Predictions:
    """A loaded llama.cpp model's predictions; ``reference_top1``: also score these tokens."""
    top1, target, at_reference = [], [], []
    offset = 0
    for ids in sessions:
        llm.reset()
        llm.eval(list(ids))
        count = len(ids) - 1
        rows = np.arange(count)
        scores = llm.scores[:count]  # a view of llama-cpp-python's logits buffer: (positions, vocabulary), fp32
        normaliser = _logsumexp(scores)
        top1.append(scores.argmax(axis=1))
        target.append(scores[rows, np.asarray(ids[1:])].astype(np.float64) - normaliser)
        if reference_top1 is not None:
            wanted = np.clip(reference_top1[offset : offset + count], 0, scores.shape[1] - 1)
            at_reference.append(scores[rows, wanted].astype(np.float64) - normaliser)
        offset += count
    return Predictions(
        top1=np.concatenate(top1),
        target=np.concatenate(target),
        at_reference=np.concatenate(at_reference) if reference_top1 is not None else None,
    )


def compare(reference: Predictions, candidate: Predictions, sessions: int) -> Agreement:
    """Top-1 agreement and |Δ log-prob| of ``candidate`` against ``reference`` on the same positions."""
    if candidate.positions != reference.positions:
        raise VerificationError(f"compared {candidate.positions} positions with {reference.positions}")
    deltas = [np.abs(candidate.target - reference.target)]
    if candidate.at_reference is not None and reference.best is not None:
        deltas.append(np.abs(candidate.at_reference - reference.best))
    delta = np.concatenate(deltas)
    differs = candidate.top1 != reference.top1
    near_ties = 0
    if reference.second is not None and reference.margin is not None:
        near_ties = int(np.sum(differs & (candidate.top1 == reference.second) & (reference.margin < TIE_MARGIN)))
    return Agreement(
        sessions=sessions,
        positions=reference.positions,
        top1_agreement=float(np.mean(~differs)),
        near_ties=near_ties,
        max_abs_dlogprob=float(np.max(delta)) if delta.size else float("nan"),
        mean_abs_dlogprob=float(np.mean(delta)) if delta.size else float("nan"),
        reference_perplexity=reference.perplexity,
        perplexity=candidate.perplexity,
    )


def hf_predictions(model: Any, sessions: Sequence[Sequence[int]]) -> Predictions:
    """The reference: a transformers model's predictions (log-probs from fp32 logits, no full log-softmax kept)."""
    import torch

    top1, target, best, second, margin = [], [], [], [], []
    model.eval()
    with torch.inference_mode():
        for ids in sessions:
            tensor = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
            logits = model(input_ids=tensor, use_cache=False).logits[0, :-1].float()
            normaliser = _torch_logsumexp(logits)
            values, indices = logits.topk(2, dim=-1)
            top1.append(indices[:, 0].cpu().numpy())
            second.append(indices[:, 1].cpu().numpy())
            best.append((values[:, 0].double() - normaliser).cpu().numpy())
            margin.append((values[:, 0] - values[:, 1]).double().cpu().numpy())
            chosen = logits.gather(1, tensor[0, 1:, None]).squeeze(1)
            target.append((chosen.double() - normaliser).cpu().numpy())
            del logits
    return Predictions(
        top1=np.concatenate(top1),
        target=np.concatenate(target),
        best=np.concatenate(best),
        second=np.concatenate(second),
        margin=np.concatenate(margin),
    )


def _torch_logsumexp(logits: Any, chunk: int = 64) -> Any:
    """Row-wise log-sum-exp in float64, a few rows at a time (a full float64 copy of 50k-wide logits is big)."""
    import torch

    return torch.cat([torch.logsumexp(block.double(), dim=-1) for block in logits.split(chunk)])


def check_agreement(agreement: Agreement, what: str) -> None:
    """Raise :class:`VerificationError` unless the f16 GGUF matches the HF model."""
    if agreement.passed:
        return
    raise VerificationError(
        f"{what} does not match the trained model: {agreement.describe()}; top-1 agreement must be "
        f"≥ {MIN_TOP1_AGREEMENT:.0%} (near-ties included). The conversion is wrong; nothing was written."
    )


def check_tokenization(llm: Any, tokenizer: Any, texts: Sequence[str]) -> None:
    """llama.cpp must split the validation text into the same tokens as the trained tokenizer."""
    for index, text in enumerate(texts):
        expected = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        actual = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        if actual != expected:
            where = next(
                (i for i, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b),
                min(len(actual), len(expected)),
            )
            raise VerificationError(
                f"llama.cpp tokenizes validation session {index} differently from the trained tokenizer "
                f"(first difference at token {where} of {len(expected)}): the converted vocabulary is wrong"
            )


def verify_f16(
    model_path: Path,
    tokenizer: Any,
    texts: Sequence[str],
    sessions: Sequence[Sequence[int]],
    reference: Predictions,
    *,
    lora_path: Path | None = None,
) -> tuple[Agreement, Predictions]:
    """Tokenization and predictions of an f16 GGUF (+ adapter) against the reference; raises on a mismatch."""
    llm = load_llama(model_path, n_ctx=context_size(sessions), lora_path=lora_path)
    try:
        check_tokenization(llm, tokenizer, texts)
        predictions = llama_predictions(llm, sessions, reference_top1=reference.top1)
    finally:
        llm.close()
    agreement = compare(reference, predictions, len(sessions))
    log.info("f16 vs trained model: %s", agreement.describe())
    check_agreement(agreement, model_path.name if lora_path is None else f"{model_path.name} + {lora_path.name}")
    return agreement, predictions


def quant_cost(
    quant: str,
    quant_path: Path,
    f16: Predictions,
    sessions: Sequence[Sequence[int]],
    lora_path: Path | None = None,
) -> QuantCost:
    """Perplexity of ``quant_path`` against the f16 file's predictions on the same sessions."""
    quantized = gguf_predictions(quant_path, sessions, lora_path=lora_path)
    return QuantCost(
        quant=quant,
        f16_perplexity=f16.perplexity,
        perplexity=quantized.perplexity,
        top1_agreement=float(np.mean(quantized.top1 == f16.top1)),
    )


def _logsumexp(scores: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Row-wise log-sum-exp in float64, a few rows at a time: no full-size copy of a big vocabulary's logits."""
    result = np.empty(len(scores), dtype=np.float64)
    for start in range(0, len(scores), chunk):
        block = scores[start : start + chunk].astype(np.float64)
        peak = block.max(axis=1, keepdims=True)
        result[start : start + chunk] = (peak + np.log(np.exp(block - peak).sum(axis=1, keepdims=True)))[:, 0]
    return result


def main(argv: list[str] | None = None) -> int:
    """Verify an exported GGUF file (and adapter) against a run's merged model, by hand."""
    parser = argparse.ArgumentParser(prog="python -m training.export.verify", description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("gguf", type=Path, help="the f16 (or any) GGUF file")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter GGUF applied over it")
    parser.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS)
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from doppel.errors import InputError
    from training.export.merge import load_trained
    from training.export.run import load_run

    try:
        run = load_run(args.run)
        if run.dataset_path is None:
            raise InputError(f"{args.run}: run.json names no dataset")
        texts = validation_texts(run.dataset_path, args.sessions)
        model, tokenizer = load_trained(run)
        sessions = encode_sessions(tokenizer, texts, args.max_tokens)
        reference = hf_predictions(model, sessions)
        agreement, _ = verify_f16(args.gguf, tokenizer, texts, sessions, reference, lora_path=args.adapter)
        print(agreement.describe())
    except (InputError, VerificationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
