"""The ``train`` stage: fine-tune a base model on a prepared dataset and write a run directory.

    doppel train DATASET --out RUN [--base ID_OR_PATH] [--method lora|full|qlora] [--max-steps N] [--epochs N]
                 [--config FILE] [--resume]
    accelerate launch --config_file deploy/accelerate/multi-gpu-ddp.yaml -m doppel.cli train DATASET --out RUN

Sessions are tokenized with the shared ChatML pieces (:mod:`training.train.labels`), packed into rows whose sessions
cannot see each other (:mod:`training.train.packing`) and trained with LoRA or full fine-tuning under accelerate,
which runs the same loop on a CPU, one GPU, DDP or FSDP. The loss is the mean over every supervised token of
an optimizer step, however the tokens are split across micro-batches and processes. The data order is a
pure function of the seed (:mod:`training.train.data`), so ``--resume`` replays it from the checkpoint's step;
the checkpoint restores the trainable weights, optimizer, scheduler and RNG state
(:mod:`training.train.checkpoints`). The run directory is described in :mod:`doppel.formats.run_dir`.

This module holds :func:`train`, a sequence of the stage's steps, and the optimizer-step loop itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from doppel.formats.dataset import load_prepared
from doppel.formats.run_dir import RunDir
from training.train.base_model import ResolvedBase, resolve_base
from training.train.checkpoints import (
    TrainerState,
    check_run_dir,
    keep_trainable_only,
    restore_latest,
    save_checkpoint,
)
from training.train.config import TrainConfig
from training.train.data import TrainingData, check_speakers, prepare_data
from training.train.evaluation import evaluate
from training.train.loss import packed_loss
from training.train.memory import GIB, check_run_fits
from training.train.model import (
    Precision,
    check_method_supported,
    choose_attention,
    choose_precision,
    count_trainable_parameters,
    load_model,
    load_tokenizer,
)
from training.train.optimizer import make_optimizer, make_scheduler
from training.train.outputs import RunRecord, finish_run_dir, save_final_model, start_run_dir
from training.train.packing import Batch, collate, supervised_count
from training.train.summary import RunSummary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

StepCallback = Callable[[dict[str, Any]], None]
"""Called on the main process after every optimizer step with that step's metrics record."""


@dataclass(frozen=True)
class Hardware:
    """Where and how this process trains: accelerate's view of the machine and the choices made for it."""

    accelerator: Any
    device: torch.device
    precision: Precision
    attention: str
    world: int  # processes
    fsdp: bool


def train(config: TrainConfig, callbacks: Sequence[StepCallback] = ()) -> RunSummary:
    """Run the stage: read ``config.dataset``, write ``config.out``. Bad input raises :class:`InputError`."""
    from accelerate.utils import set_seed

    config = config.resolved()
    dataset = load_prepared(config.dataset)
    check_speakers(dataset, config.scope)
    run = RunDir(config.out)
    resuming = check_run_dir(run, config)
    hardware = start_accelerate(config)
    accelerator = hardware.accelerator
    with accelerator.main_process_first():  # one process converts a GGUF base, the others reuse it
        base = resolve_base(config.base)
    _check_memory(base, config, hardware)
    tokenizer, added_tokens = load_tokenizer(base.hf_dir)
    data = prepare_data(dataset, config, tokenizer, attention=hardware.attention, world=hardware.world)

    set_seed(config.seed)  # LoRA initialisation and dropout
    model = _load_model(base, config, hardware, tokenizer, added_tokens)
    n_trainable, n_params = count_trainable_parameters(model)  # before accelerate wraps or shards it
    vocab_size = int(model.config.get_text_config().vocab_size)  # after any resize for added tokens
    model, optimizer, scheduler = _prepare_optimization(accelerator, model, config, total_steps=len(data.steps))

    record = RunRecord(config, dataset, base, added_tokens, vocab_size)
    state = _restore_or_start(accelerator, run, record, resuming=resuming, world=hardware.world)
    if accelerator.is_main_process:
        _log_plan(config, hardware, data, n_trainable, n_params)
    if state.step == 0 and data.val_batches:
        state.record_validation(evaluate(model, data.val_batches, accelerator))
        if accelerator.is_main_process:
            run.append_metrics({"step": 0, "val_loss": state.last_val_loss})

    loop = StepLoop(accelerator, model, optimizer, scheduler, config=config, run=run, data=data)
    loop.run(state, callbacks)

    save_final_model(accelerator, model, tokenizer, run)
    if accelerator.is_main_process:
        finish_run_dir(run, record, state)
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


def start_accelerate(config: TrainConfig) -> Hardware:
    """Find the device, refuse a method or kernel it cannot run, choose precision and attention, start accelerate."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedType

    # Without a GPU, accelerate only goes multi-process (torchrun / accelerate launch) when told it is on CPU.
    on_cpu = not torch.cuda.is_available()
    device = PartialState(cpu=on_cpu).device
    check_method_supported(config.method, device, config.attn_implementation)
    precision = choose_precision(config.precision, device)
    attention = choose_attention(config.attn_implementation, device)
    accelerator = Accelerator(mixed_precision=precision.mixed_precision, cpu=on_cpu)
    return Hardware(
        accelerator=accelerator,
        device=device,
        precision=precision,
        attention=attention,
        world=accelerator.num_processes,
        fsdp=accelerator.distributed_type == DistributedType.FSDP,
    )


def _check_memory(base: ResolvedBase, config: TrainConfig, hardware: Hardware) -> None:
    """Refuse, before any weights load, a run that cannot fit; FSDP splits the full-method state."""
    estimate, available = check_run_fits(
        base.hf_dir,
        config,
        compute_bytes=hardware.precision.bytes,
        device=hardware.device,
        shards=hardware.world if hardware.fsdp else 1,
    )
    log.info("memory: the run needs %s; %.1f GiB available", estimate.describe(), available / GIB)


def _load_model(
    base: ResolvedBase,
    config: TrainConfig,
    hardware: Hardware,
    tokenizer: PreTrainedTokenizerBase,
    added_tokens: list[dict[str, Any]],
) -> torch.nn.Module:
    """The model for the optimizer, on this process's GPU (FSDP places the weights itself)."""
    device = hardware.device
    device_map = None if hardware.fsdp or device.type != "cuda" else {"": str(device)}
    return load_model(
        base.hf_dir,
        config,
        tokenizer,
        added_tokens,
        precision=hardware.precision,
        device_map=device_map,
        attention=hardware.attention,
    )


def _prepare_optimization(
    accelerator: Any, model: torch.nn.Module, config: TrainConfig, *, total_steps: int
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    """The model and optimizer prepared by accelerate, the scheduler, and what a checkpoint saves of them."""
    model, optimizer = accelerator.prepare(model, make_optimizer(model, config))
    # Not prepared: accelerate would step a prepared scheduler once per process; ours counts optimizer steps.
    scheduler = make_scheduler(config, optimizer, total_steps)
    accelerator.register_for_checkpointing(scheduler)
    if config.method != "full":
        accelerator.register_save_state_pre_hook(keep_trainable_only)
    return model, optimizer, scheduler


def _restore_or_start(accelerator: Any, run: RunDir, record: RunRecord, *, resuming: bool, world: int) -> TrainerState:
    """The latest checkpoint's progress when resuming; otherwise a fresh state and a new run directory."""
    state = TrainerState(world_size=world)
    if resuming:
        state = restore_latest(accelerator, run, world)
        log.info("resuming %s from step %d", run.path, state.step)
    elif accelerator.is_main_process:
        start_run_dir(run, record, state)
    accelerator.wait_for_everyone()
    return state


def _log_plan(config: TrainConfig, hardware: Hardware, data: TrainingData, n_trainable: int, n_params: int) -> None:
    """One line saying what is about to train, on what, and how."""
    log.info(
        "training %s (%s of %s parameters) on %d sessions, %s tokens (%s supervised, scope %s): "
        "%d steps of %d micro-batch(es) × %d process(es), on %s in %s, attention %s",
        config.method,
        f"{n_trainable:,}",
        f"{n_params:,}",
        len(data.train.sessions),
        f"{sum(data.train.lengths):,}",
        f"{data.train.n_supervised:,}",
        config.loss_scope,
        len(data.steps),
        config.grad_accum,
        hardware.world,
        hardware.device.type,
        str(hardware.precision.compute_dtype).removeprefix("torch."),
        hardware.attention,
    )


class StepLoop:
    """The optimizer steps of one process, with metrics, validation, checkpoints and the progress bar."""

    def __init__(
        self,
        accelerator: Any,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        *,
        config: TrainConfig,
        run: RunDir,
        data: TrainingData,
    ) -> None:
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.config = config
        self.run_dir = run
        self.data = data
        self.saved_step = -1
        self.progress: tqdm | None = None

    def run(self, state: TrainerState, callbacks: Sequence[StepCallback]) -> None:
        """Train from ``state.step`` to the end of the plan; on Ctrl-C, checkpoint the last step first."""
        try:
            self.run_steps(state, callbacks)
        except KeyboardInterrupt:
            if self.saved_step != state.step and state.step > 0:
                self.checkpoint(state)
            log.info(
                "interrupted at step %d; continue with: doppel train ... --out %s --resume",
                state.step,
                self.run_dir.path,
            )
            raise
        finally:
            if self.progress is not None:
                self.progress.close()

    def run_steps(self, state: TrainerState, callbacks: Sequence[StepCallback]) -> None:
        """Each step: train, validate every ``eval_every``, record metrics, checkpoint every ``save_every``."""
        accelerator, config, steps_plan = self.accelerator, self.config, self.data.steps
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
            if self.data.val_batches and (state.step % config.eval_every == 0 or state.step == total):
                state.record_validation(evaluate(self.model, self.data.val_batches, accelerator))
                record["val_loss"] = state.last_val_loss
            if accelerator.is_main_process:
                self.run_dir.append_metrics(record)
                self.show_progress(record, state)
            if state.step % config.save_every == 0 or state.step == total:
                self.checkpoint(state)
            if accelerator.is_main_process:
                for callback in callbacks:
                    callback(record)

    def step(self, state: TrainerState, micro_batches: Sequence[Batch]) -> dict[str, Any]:
        """One optimizer step over this process's share of ``micro_batches``."""
        accelerator, sessions = self.accelerator, self.data.train.sessions
        world, rank = accelerator.num_processes, accelerator.process_index
        started = time.perf_counter()
        mine = micro_batches[rank::world] if world > 1 else micro_batches
        # Normalise by the step's supervised tokens on all processes: DDP then averages to the global mean.
        n_supervised = sum(supervised_count(sessions, batch) for batch in micro_batches)
        loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        tokens = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        lr = self.scheduler.get_last_lr()[0]
        for index, batch_rows in enumerate(mine):
            batch = collate(sessions, batch_rows, self.data.pad_id, flatten=self.data.flatten)
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
        session_ids = self.data.train.session_ids
        batch_ids = [session_ids[index] for batch in micro_batches for row in batch for index in row]
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

    def show_progress(self, record: dict[str, Any], state: TrainerState) -> None:
        """Advance the progress bar, showing the step's loss and speed and the latest validation loss."""
        if self.progress is None:
            return
        postfix = {"loss": f"{record['loss']:.3f}", "tok/s": f"{record['tokens_per_s']:.0f}"}
        if state.last_val_loss is not None:
            postfix["val"] = f"{state.last_val_loss:.3f}"
        self.progress.set_postfix(postfix, refresh=False)
        self.progress.update(1)

    def checkpoint(self, state: TrainerState) -> None:
        """Save a checkpoint of ``state.step`` (see :func:`training.train.checkpoints.save_checkpoint`)."""
        save_checkpoint(self.accelerator, self.run_dir, state, self.config.keep_checkpoints)
        self.saved_step = state.step
