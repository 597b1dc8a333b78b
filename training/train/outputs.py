"""What a run writes besides its checkpoints: ``config.yaml`` and ``run.json`` when it starts; the final
model, ``run.json`` again and the loss curve ``loss.png`` when it ends.

The files and their keys are the contract of :mod:`doppel.formats.run_dir`, which the export stage reads.
Library only; :mod:`training.train.loop` uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from doppel import __version__
from doppel.formats.dataset import PreparedDataset
from doppel.formats.run_dir import RunDir, fresh_directory, publish_directory
from training.train.base_model import ResolvedBase
from training.train.checkpoints import TrainerState
from training.train.config import TrainConfig
from training.train.plots import plot_loss

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` says about a run besides its progress: fixed when the run starts."""

    config: TrainConfig
    dataset: PreparedDataset
    base: ResolvedBase
    added_tokens: list[dict[str, Any]]
    vocab_size: int  # after any resize for added tokens

    def write(self, run: RunDir, state: TrainerState, *, finished: bool) -> None:
        """(Re)write ``run.json`` with the progress in ``state``."""
        config, base = self.config, self.base
        info: dict[str, Any] = {
            "method": config.method,
            "base": {"source": base.source, "hf_dir": str(base.hf_dir), "sha256": base.sha256},
            "loss_scope": config.loss_scope,
            "dataset": self.dataset.manifest,
            "dataset_path": str(config.dataset),
            "program": {"name": "doppel", "version": __version__, "stage": "train"},
            "finished": finished,
            "step": state.step,
            "best_val_loss": state.best_val_loss,
            "added_tokens": self.added_tokens,
            "vocab_size": self.vocab_size,
        }
        run.write_run_json(info)


def start_run_dir(run: RunDir, record: RunRecord, state: TrainerState) -> None:
    """Create the run directory with its resolved ``config.yaml`` and an unfinished ``run.json``."""
    run.path.mkdir(parents=True, exist_ok=True)
    run.config_yaml.write_text(record.config.to_yaml(), encoding="utf-8")
    record.write(run, state, finished=False)


def save_final_model(accelerator: Any, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, run: RunDir) -> None:
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


def finish_run_dir(run: RunDir, record: RunRecord, state: TrainerState) -> None:
    """Mark ``run.json`` finished and draw ``loss.png`` from the metrics."""
    record.write(run, state, finished=True)
    config = record.config
    plot_loss(
        run.read_metrics(),
        run.loss_png,
        f"doppel train: {config.method}, {Path(record.base.source).name}, scope {config.loss_scope}",
    )
