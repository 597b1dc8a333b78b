"""The run directory that ``doppel train`` writes and the export stage reads (format ``doppel-run/1``)::

    RUN/
      run.json             format, method, base {source, hf_dir, sha256}, loss_scope, the dataset manifest
                           carried forward, dataset_path, program, finished, step, best_val_loss,
                           added_tokens, vocab_size
      config.yaml          the resolved settings; `TrainConfig` loads it back unchanged
      model/               LoRA: the peft adapter (adapter_config.json, adapter_model.safetensors)
                           + tokenizer;
                           full: the whole HF model + tokenizer. Written once, at the end, atomically.
      metrics.jsonl        one JSON object per line: training steps and validation passes (key val_loss)
      loss.png             the loss curves
      checkpoints/step-N/  what --resume needs (trainable weights, optimizer, scheduler, RNG state,
                           trainer_state.json);
                           each written under a temporary name and renamed, the last K kept

Every file here is replaced atomically (written beside, then renamed), so a crash leaves the previous version.
Library only; :mod:`training.train.loop` uses it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

RUN_FORMAT = "doppel-run/1"
RUN_JSON = "run.json"
CONFIG_YAML = "config.yaml"
MODEL_DIR = "model"
METRICS = "metrics.jsonl"
LOSS_PNG = "loss.png"
CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer_state.json"
_STEP_PREFIX = "step-"
_SCRATCH_PREFIX = ".tmp-"


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename over it: readers see the old file or the new one, never half."""
    scratch = path.with_name(f"{_SCRATCH_PREFIX}{path.name}.{os.getpid()}")
    scratch.write_text(text, encoding="utf-8")
    scratch.replace(path)


def write_json_atomic(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def fresh_directory(path: Path) -> Path:
    """Create ``path`` empty, removing what a crashed attempt may have left there."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def publish_directory(scratch: Path, final: Path) -> None:
    """Move a fully written directory into place, replacing an older one of the same name."""
    if final.exists():
        retired = final.with_name(f"{_SCRATCH_PREFIX}old-{final.name}")
        shutil.rmtree(retired, ignore_errors=True)
        final.replace(retired)
        scratch.replace(final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        scratch.replace(final)


class RunDir:
    """Paths and bookkeeping of one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def config_yaml(self) -> Path:
        return self.path / CONFIG_YAML

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def loss_png(self) -> Path:
        return self.path / LOSS_PNG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    def read_run_json(self) -> dict[str, Any]:
        return dict(json.loads(self.run_json.read_text(encoding="utf-8")))

    def write_run_json(self, info: dict[str, Any]) -> None:
        write_json_atomic(self.run_json, {"format": RUN_FORMAT, **info})

    def scratch(self, name: str) -> Path:
        """Where ``name`` is written before :func:`publish_directory` moves it into place (not created)."""
        return self.path / f"{_SCRATCH_PREFIX}{name}"

    # Checkpoints

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{_STEP_PREFIX}{step}"

    def checkpoint_scratch(self, step: int) -> Path:
        """Where checkpoint ``step`` is written before it is renamed to :meth:`checkpoint` (not created)."""
        return self.checkpoints / f"{_SCRATCH_PREFIX}{_STEP_PREFIX}{step}"

    def checkpoint_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first (scratch directories are not complete)."""
        if not self.checkpoints.is_dir():
            return []
        steps = [
            int(child.name.removeprefix(_STEP_PREFIX))
            for child in self.checkpoints.iterdir()
            if child.is_dir() and child.name.startswith(_STEP_PREFIX) and child.name[len(_STEP_PREFIX) :].isdigit()
        ]
        return sorted(steps)

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the ``keep`` latest checkpoints, and any scratch left by a crash."""
        for step in self.checkpoint_steps()[:-keep]:
            shutil.rmtree(self.checkpoint(step), ignore_errors=True)
        for child in self.checkpoints.glob(f"{_SCRATCH_PREFIX}*"):
            shutil.rmtree(child, ignore_errors=True)

    # Metrics

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.is_file():
            return []
        lines = self.metrics.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def truncate_metrics(self, last_step: int) -> None:
        """Drop records after ``last_step``: a resumed run rewrites them."""
        kept = [record for record in self.read_metrics() if record.get("step", 0) <= last_step]
        write_text_atomic(self.metrics, "".join(json.dumps(record) + "\n" for record in kept))
