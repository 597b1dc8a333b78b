"""Checkpoints of a training run: what ``--resume`` needs, saved atomically, and the checks before resuming.

A checkpoint (``RUN/checkpoints/step-N/``) holds accelerate's state (the trainable weights, optimizer,
scheduler and RNG state) plus :class:`TrainerState` as ``trainer_state.json``. It is written under a
temporary name and renamed into place; only the last ``--keep-checkpoints`` are kept. Library only;
:mod:`training.train.loop` uses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from doppel.errors import InputError
from doppel.formats.run_dir import TRAINER_STATE, RunDir, fresh_directory, publish_directory, write_json_atomic
from training.train.config import TrainConfig, resume_conflicts


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

    def record_validation(self, loss: float) -> None:
        """Note a validation loss: the latest, the best so far and, before the first step, the first."""
        if self.step == 0:
            self.first_val_loss = loss
        self.last_val_loss = loss
        if self.best_val_loss is None or loss < self.best_val_loss:
            self.best_val_loss = loss


def check_run_dir(run: RunDir, config: TrainConfig) -> bool:
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


def restore_latest(accelerator: Any, run: RunDir, world: int) -> TrainerState:
    """Load the run's latest checkpoint into the prepared model, optimizer and scheduler; drop later metrics."""
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
    return state


def save_checkpoint(accelerator: Any, run: RunDir, state: TrainerState, keep: int) -> None:
    """Save what --resume needs under a temporary name, then rename it into place; keep the last ``keep``.

    Every process takes part (FSDP gathers collectively); only the main one writes the shared files.
    """
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
        run.prune_checkpoints(keep)
        run_info = run.read_run_json()
        run_info.update(step=state.step, best_val_loss=state.best_val_loss)
        run.write_run_json({key: value for key, value in run_info.items() if key != "format"})
    accelerator.wait_for_everyone()


def keep_trainable_only(models: list[torch.nn.Module], weights: list[dict[str, Any]], _output_dir: str) -> None:
    """accelerate hook: a (Q)LoRA checkpoint holds the adapter, not another copy of the frozen base."""
    for index, model in enumerate(models):
        if index < len(weights):
            trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
            weights[index] = {name: tensor for name, tensor in weights[index].items() if name in trainable}
