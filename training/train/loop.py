"""The ``train`` stage: fine-tune a base model on a prepared dataset and write a run directory.

    doppel train DATASET --out RUN [--base ID_OR_PATH] [--method lora|full|qlora] [--max-steps N] [--epochs N]
                 [--config FILE] [--resume]
    accelerate launch --config_file deploy/accelerate/multi-gpu-ddp.yaml -m doppel.cli train DATASET --out RUN

Sessions are tokenized with the shared ChatML pieces (:mod:`training.train.labels`), packed into rows whose sessions
cannot see each other (:mod:`training.train.packing`) and trained with LoRA or full fine-tuning under accelerate,
which runs the same loop on a CPU, one GPU, DDP or FSDP. The loss is the mean over every supervised token of
an optimizer step, however the tokens are split across micro-batches and processes. The data order is a
pure function of the seed, so ``--resume`` replays it from the checkpoint's step; the checkpoint restores
the trainable weights, optimizer, scheduler and RNG state. The run directory is described in
:mod:`doppel.formats.run_dir`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from doppel import __version__
from doppel.errors import InputError
from doppel.formats.dataset import PreparedDataset, load_prepared
from doppel.formats.run_dir import (
    TRAINER_STATE,
    RunDir,
    fresh_directory,
    publish_directory,
    write_json_atomic,
)
from training.train.attention import needs_single_row
from training.train.base_model import ResolvedBase, resolve_base
from training.train.config import TrainConfig, resume_conflicts
from training.train.labels import LossScope, SessionTokenizer, TokenizedSession
from training.train.loss import packed_loss
from training.train.memory import GIB, check_memory, estimate_memory, free_memory
from training.train.model import (
    check_method_supported,
    choose_attention,
    choose_precision,
    count_parameters,
    load_model,
    load_tokenizer,
    pad_token_id,
)
from training.train.packing import Batch, PackedBatch, collate, plan_epoch, supervised_count

log = logging.getLogger(__name__)

StepCallback = Callable[[dict[str, Any]], None]
"""Called on the main process after every optimizer step with that step's metrics record."""

_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
_TOKENIZATION_CHECKS = 8  # sessions whose piecewise ids are compared with tokenizing the whole text


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


@dataclass
class TrainerState:
    """Progress that a checkpoint records beside the weights (``trainer_state.json``)."""

    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    first_val_loss: float | None = None
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    world_size: int = 1

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TokenizedSplit:
    sessions: list[TokenizedSession]
    session_ids: list[str]

    @property
    def lengths(self) -> list[int]:
        return [len(session) for session in self.sessions]


def train(config: TrainConfig, callbacks: Sequence[StepCallback] = ()) -> RunSummary:
    """Run the stage: read ``config.dataset``, write ``config.out``. Bad input raises :class:`InputError`."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType, set_seed

    config = config.resolved()
    dataset = load_prepared(config.dataset)
    check_speakers(dataset, config.scope)
    run = RunDir(config.out)
    resuming = _check_run_dir(run, config)
    # Without a GPU, accelerate only goes multi-process (torchrun / accelerate launch) when told it is on CPU.
    on_cpu = not torch.cuda.is_available()
    device = PartialState(cpu=on_cpu).device
    check_method_supported(config.method, device, config.attn_implementation)
    precision = choose_precision(config.precision, device)
    attention = choose_attention(config.attn_implementation, device)
    accelerator = Accelerator(mixed_precision=precision.mixed_precision, cpu=on_cpu)
    world = accelerator.num_processes
    fsdp = accelerator.distributed_type == DistributedType.FSDP

    with accelerator.main_process_first():  # one process converts a GGUF base, the others reuse it
        base = resolve_base(config.base)
    _check_memory(base, config, precision.bytes, device, world if fsdp else 1)
    tokenizer, added_tokens = load_tokenizer(base.hf_dir)
    session_tokenizer = SessionTokenizer(tokenizer, config.scope, dataset.owner)
    train_split = tokenize_split(dataset.splits["train"], session_tokenizer)
    val_split = tokenize_split(dataset.splits["validation"], session_tokenizer)
    if sum(session.n_supervised for session in train_split.sessions) == 0:
        raise InputError(
            f"{config.dataset}: the loss scope {config.loss_scope!r} supervises no token of the training split"
        )

    per_step = config.grad_accum * world
    steps_plan = plan_steps(train_split.lengths, config, per_step, drop_last=world > 1)
    val_batches = [
        collate(val_split.sessions, batch, pad_token_id(tokenizer), flatten=needs_single_row(attention))
        for batch in plan_epoch(val_split.lengths, config.seq_len, config.rows_per_batch, config.seed, 0)
    ]
    total_steps = len(steps_plan)

    set_seed(config.seed)  # LoRA initialisation and dropout
    device_map = None if fsdp or device.type != "cuda" else {"": str(device)}
    model = load_model(
        base.hf_dir,
        config,
        tokenizer,
        added_tokens,
        precision=precision,
        device_map=device_map,
        attention=attention,
    )
    n_trainable, n_params = count_parameters(model)
    vocab_size = int(model.config.get_text_config().vocab_size)  # after any resize for added tokens
    optimizer = torch.optim.AdamW(
        [parameter for parameter in model.parameters() if parameter.requires_grad],
        lr=config.learning_rate or 0.0,
        weight_decay=config.weight_decay,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    # Not prepared: accelerate would step a prepared scheduler once per process; ours counts optimizer steps.
    scheduler = _make_scheduler(config, optimizer, total_steps)
    accelerator.register_for_checkpointing(scheduler)
    if config.method != "full":
        accelerator.register_save_state_pre_hook(_keep_trainable_only)

    state = TrainerState(world_size=world)
    if resuming:
        state = _restore(accelerator, run, world)
    elif accelerator.is_main_process:
        run.path.mkdir(parents=True, exist_ok=True)
        run.config_yaml.write_text(config.to_yaml(), encoding="utf-8")
        _write_run_json(
            run,
            config,
            dataset,
            base=base,
            added_tokens=added_tokens,
            vocab_size=vocab_size,
            state=state,
            finished=False,
        )
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        train_tokens = sum(train_split.lengths)
        log.info(
            "training %s (%s of %s parameters) on %d sessions, %s tokens (%s supervised, scope %s): "
            "%d steps of %d micro-batch(es) × %d process(es), on %s in %s, attention %s",
            config.method,
            f"{n_trainable:,}",
            f"{n_params:,}",
            len(train_split.sessions),
            f"{train_tokens:,}",
            f"{sum(session.n_supervised for session in train_split.sessions):,}",
            config.loss_scope,
            total_steps,
            config.grad_accum,
            world,
            device.type,
            str(precision.compute_dtype).removeprefix("torch."),
            attention,
        )

    if state.step == 0 and val_batches:
        val_loss = evaluate(model, val_batches, accelerator)
        state.first_val_loss = state.best_val_loss = state.last_val_loss = val_loss
        if accelerator.is_main_process:
            run.append_metrics({"step": 0, "val_loss": val_loss})

    loop = _Loop(
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        config=config,
        run=run,
        train_split=train_split,
        val_batches=val_batches,
        pad_id=pad_token_id(tokenizer),
        flatten=needs_single_row(attention),
    )
    try:
        loop.run(state, steps_plan, callbacks)
    except KeyboardInterrupt:
        if loop.saved_step != state.step and state.step > 0:
            loop.checkpoint(state)
        log.info("interrupted at step %d; continue with: doppel train ... --out %s --resume", state.step, run.path)
        raise
    finally:
        loop.close()

    _save_final_model(accelerator, model, tokenizer, run)
    if accelerator.is_main_process:
        _write_run_json(
            run,
            config,
            dataset,
            base=base,
            added_tokens=added_tokens,
            vocab_size=vocab_size,
            state=state,
            finished=True,
        )
        run.plot_loss(f"doppel train: {config.method}, {Path(base.source).name}, scope {config.loss_scope}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return RunSummary(
        run_dir=run.path,
        model_dir=run.model_dir,
        method=config.method,
        steps=state.step,
        tokens=state.tokens,
        seconds=state.seconds,
        first_val_loss=state.first_val_loss,
        best_val_loss=state.best_val_loss,
        final_val_loss=state.last_val_loss,
    )


def check_speakers(dataset: PreparedDataset, scope: LossScope) -> None:
    """The owner must speak in the training split, and every persona of the scope must exist and speak."""
    turns_by_speaker = Counter(turn["speaker"] for turns in dataset.splits["train"]["turns"] for turn in turns)
    owner = dataset.owner
    if turns_by_speaker[owner] == 0:
        raise InputError(
            f"{dataset.path}: the owner {owner!r} never speaks in the training split, so there is no style "
            "to learn (did `doppel prepare --me` name the right person?)"
        )
    if scope.kind != "personas":
        return
    known = {str(speaker["name"]) for speaker in dataset.speakers}
    for name in scope.names:
        if name not in known:
            listing = ", ".join(sorted(known)[:12])
            raise InputError(f"--loss-scope: no speaker named {name!r} in {dataset.path} (speakers: {listing})")
        if turns_by_speaker[name] == 0:
            raise InputError(f"--loss-scope: {name!r} never speaks in the training split of {dataset.path}")


def tokenize_split(split: Any, session_tokenizer: SessionTokenizer) -> TokenizedSplit:
    """Ids and labels for every session of a dataset split, checked against whole-text tokenization."""
    rows = split.select_columns(["session_id", "turns", "text"])
    sessions = session_tokenizer.many(rows["turns"])
    for index in range(min(_TOKENIZATION_CHECKS, len(rows))):
        if not session_tokenizer.matches_whole_text(rows[index]["turns"], rows[index]["text"]):
            log.warning(
                "this tokenizer splits the ChatML pieces differently from the whole text; training keeps the "
                "piecewise ids, which may differ slightly from what an engine tokenizes at inference"
            )
            break
    return TokenizedSplit(sessions=sessions, session_ids=list(rows["session_id"]))


def plan_steps(lengths: Sequence[int], config: TrainConfig, per_step: int, drop_last: bool) -> list[list[Batch]]:
    """The micro-batches of every optimizer step of the run, ``per_step`` (= grad_accum × processes) each.

    With ``--max-steps`` the epochs repeat (each reshuffled) until there are enough steps. With several
    processes an incomplete last step is dropped, since every process must run the same number of batches.
    """
    micro: list[Batch] = []
    epoch = 0
    while epoch < config.epochs or (config.max_steps and len(micro) < config.max_steps * per_step):
        epoch_batches = plan_epoch(lengths, config.seq_len, config.rows_per_batch, config.seed, epoch)
        if not epoch_batches:
            break
        micro.extend(epoch_batches)
        epoch += 1
        if config.max_steps and epoch >= config.epochs and len(micro) >= config.max_steps * per_step:
            break
    steps = [micro[start : start + per_step] for start in range(0, len(micro), per_step)]
    if steps and drop_last and len(steps[-1]) < per_step:
        steps.pop()
    if config.max_steps:
        steps = steps[: config.max_steps]
    if not steps:
        raise InputError(f"{config.dataset}: not enough training sessions for one step of {per_step} micro-batches")
    return steps


def evaluate(model: torch.nn.Module, batches: Sequence[PackedBatch], accelerator: Any) -> float:
    """Mean loss per supervised token over the batches, all processes together.

    Every process runs the same number of forward passes (a spare one repeats a batch with weight 0),
    because FSDP gathers weights collectively.
    """
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    world, rank = accelerator.num_processes, accelerator.process_index
    with torch.no_grad():
        for round_start in range(0, len(batches), world):
            index = round_start + rank
            batch = batches[index] if index < len(batches) else batches[0]
            weight = 1.0 if index < len(batches) else 0.0
            loss_sum = packed_loss(model, batch, accelerator.device, num_items=1.0)
            totals[0] += loss_sum.double() * weight
            totals[1] += batch.n_supervised * weight
    totals = accelerator.reduce(totals, reduction="sum")
    model.train()
    return float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")


class _Loop:
    """The optimizer steps of one process, with metrics, validation, checkpoints and the progress bar."""

    def __init__(
        self,
        *,
        accelerator: Any,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        config: TrainConfig,
        run: RunDir,
        train_split: TokenizedSplit,
        val_batches: Sequence[PackedBatch],
        pad_id: int,
        flatten: bool,
    ) -> None:
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.config = config
        self.run_dir = run
        self.split = train_split
        self.val_batches = val_batches
        self.pad_id = pad_id
        self.flatten = flatten
        self.saved_step = -1
        self.progress: tqdm | None = None

    def run(
        self, state: TrainerState, steps_plan: Sequence[Sequence[Batch]], callbacks: Sequence[StepCallback]
    ) -> None:
        accelerator, config = self.accelerator, self.config
        total = len(steps_plan)
        self.progress = tqdm(
            total=total,
            initial=state.step,
            desc="train",
            unit="step",
            disable=not accelerator.is_main_process,
        )
        self.model.train()
        while state.step < total:
            record = {"step": state.step + 1, **self.step(state, steps_plan[state.step])}
            state.step += 1
            if self.val_batches and (state.step % config.eval_every == 0 or state.step == total):
                val_loss = evaluate(self.model, self.val_batches, accelerator)
                state.last_val_loss = val_loss
                if state.best_val_loss is None or val_loss < state.best_val_loss:
                    state.best_val_loss = val_loss
                record["val_loss"] = val_loss
            if accelerator.is_main_process:
                self.run_dir.append_metrics(record)
                postfix = {"loss": f"{record['loss']:.3f}", "tok/s": f"{record['tokens_per_s']:.0f}"}
                if state.last_val_loss is not None:
                    postfix["val"] = f"{state.last_val_loss:.3f}"
                self.progress.set_postfix(postfix, refresh=False)
                self.progress.update(1)
            if state.step % config.save_every == 0 or state.step == total:
                self.checkpoint(state)
            if accelerator.is_main_process:
                for callback in callbacks:
                    callback(record)

    def step(self, state: TrainerState, micro_batches: Sequence[Batch]) -> dict[str, Any]:
        """One optimizer step over this process's share of ``micro_batches``."""
        accelerator, sessions = self.accelerator, self.split.sessions
        world, rank = accelerator.num_processes, accelerator.process_index
        started = time.perf_counter()
        mine = micro_batches[rank::world] if world > 1 else micro_batches
        # Normalise by the step's supervised tokens on all processes: DDP then averages to the global mean.
        n_supervised = sum(supervised_count(sessions, batch) for batch in micro_batches)
        loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        tokens = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        lr = self.scheduler.get_last_lr()[0]
        for index, batch_rows in enumerate(mine):
            batch = collate(sessions, batch_rows, self.pad_id, flatten=self.flatten)
            sync = index == len(mine) - 1
            context = accelerator.no_sync(self.model) if not sync else contextlib.nullcontext()
            with context:
                loss = packed_loss(self.model, batch, accelerator.device, num_items=max(n_supervised, 1) / world)
                accelerator.backward(loss)
            loss_sum += loss.detach().double() * max(n_supervised, 1) / world
            tokens += batch.n_tokens
        grad_norm = accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        totals = accelerator.reduce(torch.stack([loss_sum, tokens]), reduction="sum")
        elapsed = time.perf_counter() - started
        step_tokens = int(totals[1])
        state.tokens += step_tokens
        state.seconds += elapsed
        batch_ids = [self.split.session_ids[index] for batch in micro_batches for row in batch for index in row]
        return {
            "loss": float(totals[0]) / max(n_supervised, 1),
            "lr": lr,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "tokens": step_tokens,
            "supervised_tokens": n_supervised,
            "tokens_per_s": step_tokens / elapsed if elapsed > 0 else 0.0,
            "step_time_s": elapsed,
            "total_tokens": state.tokens,
            "batch": hashlib.sha256("\n".join(batch_ids).encode()).hexdigest()[:16],
        }

    def checkpoint(self, state: TrainerState) -> None:
        """Save what --resume needs under a temporary name, then rename it into place; keep the last K."""
        accelerator, run = self.accelerator, self.run_dir
        scratch = run.checkpoint_scratch(state.step)
        if accelerator.is_main_process:
            fresh_directory(scratch)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(scratch))
        if accelerator.is_main_process:
            write_json_atomic(scratch / TRAINER_STATE, state.to_json())
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            publish_directory(scratch, run.checkpoint(state.step))
            run.prune_checkpoints(self.config.keep_checkpoints)
            run_info = run.read_run_json()
            run_info.update(step=state.step, best_val_loss=state.best_val_loss)
            run.write_run_json({key: value for key, value in run_info.items() if key != "format"})
        accelerator.wait_for_everyone()
        self.saved_step = state.step

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


def _keep_trainable_only(models: list[torch.nn.Module], weights: list[dict[str, Any]], _output_dir: str) -> None:
    """accelerate hook: a (Q)LoRA checkpoint holds the adapter, not another copy of the frozen base."""
    for index, model in enumerate(models):
        if index < len(weights):
            trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
            weights[index] = {name: tensor for name, tensor in weights[index].items() if name in trainable}


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    from transformers import get_scheduler

    return get_scheduler(
        _SCHEDULERS[config.lr_scheduler],
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


def _check_run_dir(run: RunDir, config: TrainConfig) -> bool:
    """Whether this is a resume; refuses to overwrite a run, or to resume one that cannot be continued."""
    if not config.resume:
        if not run.is_empty():
            raise InputError(
                f"{run.path}: already exists and is not empty; add --resume to continue it, or pick a new --out"
            )
        return False
    if not run.run_json.is_file() or not run.config_yaml.is_file():
        raise InputError(f"{run.path}: no run to resume here (run.json or config.yaml is missing)")
    info = run.read_run_json()
    if info.get("finished"):
        raise InputError(f"{run.path}: this run finished at step {info.get('step')}; there is nothing to resume")
    conflicts = resume_conflicts(TrainConfig.load_yaml(run.config_yaml), config)
    if conflicts:
        raise InputError(f"{run.path}: --resume must keep the run's settings; changed: {', '.join(conflicts)}")
    if not run.checkpoint_steps():
        raise InputError(f"{run.path}: no checkpoint to resume from yet; start again with a new --out")
    return True


def _restore(accelerator: Any, run: RunDir, world: int) -> TrainerState:
    step = run.checkpoint_steps()[-1]
    path = run.checkpoint(step)
    state = TrainerState(**json.loads((path / TRAINER_STATE).read_text(encoding="utf-8")))
    if state.world_size != world:
        raise InputError(
            f"{run.path}: the run trained on {state.world_size} process(es); resume it on as many (now {world})"
        )
    accelerator.load_state(str(path), strict=False)  # strict=False: a LoRA checkpoint omits the frozen base
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run.truncate_metrics(step)
    log.info("resuming %s from step %d", run.path, step)
    return state


def _check_memory(
    base: ResolvedBase, config: TrainConfig, compute_bytes: int, device: torch.device, shards: int
) -> None:
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(base.hf_dir)
    estimate = estimate_memory(
        model_config,
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
    log.info("memory: the run needs %s; %.1f GiB available", estimate.describe(), available / GIB)


def _save_final_model(accelerator: Any, model: torch.nn.Module, tokenizer: Any, run: RunDir) -> None:
    """``RUN/model/``: the adapter (peft) or the full model, plus the tokenizer, published atomically."""
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # gathers FSDP shards; needed by every process
    if accelerator.is_main_process:
        scratch = fresh_directory(run.scratch("model"))
        unwrapped = accelerator.unwrap_model(model)
        kwargs: dict[str, Any] = {"state_dict": state_dict}
        if hasattr(unwrapped, "peft_config"):
            # The added tokens' rows travel as trainable tokens; the whole embedding matrix need not.
            kwargs["save_embedding_layers"] = False
        unwrapped.save_pretrained(scratch, **kwargs)
        tokenizer.save_pretrained(scratch)
        publish_directory(scratch, run.model_dir)
    accelerator.wait_for_everyone()


def _write_run_json(
    run: RunDir,
    config: TrainConfig,
    dataset: PreparedDataset,
    *,
    base: ResolvedBase,
    added_tokens: list[dict[str, Any]],
    vocab_size: int,
    state: TrainerState,
    finished: bool,
) -> None:
    info: dict[str, Any] = {
        "method": config.method,
        "base": {"source": base.source, "hf_dir": str(base.hf_dir), "sha256": base.sha256},
        "loss_scope": config.loss_scope,
        "dataset": dataset.manifest,
        "dataset_path": str(config.dataset),
        "program": {"name": "doppel", "version": __version__, "stage": "train"},
        "finished": finished,
        "step": state.step,
        "best_val_loss": state.best_val_loss,
        "added_tokens": added_tokens,
        "vocab_size": vocab_size,
    }
    run.write_run_json(info)
