"""The up-front checks of ``doppel export``: cheap, run before anything heavy, each failure one :class:`InputError`.

The quantization, the output path and its directory, the free disk space at the export's peak (estimated from
the checkpoint's safetensors headers), and the validation data that verification needs. The run directory is
checked by :mod:`training.export.run`, the architecture by :mod:`training.export.convert`. Library only;
:func:`training.export.pipeline.export` runs them in order.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from doppel.errors import InputError
from training.export.quantize import F16, QUANTS
from training.export.run import GGUF_SUFFIX, ExportableRun, check_safetensors
from training.export.verify import validation_texts

GB = 1e9
_DISK_MARGIN = 1.05
_DISK_SLACK = 64 << 20  # logs, tokenizer files, the adapter


def check_quant(quant: str) -> str:
    """``quant`` if doppel offers it, else an :class:`InputError` listing what it offers."""
    if quant not in QUANTS:
        raise InputError(f"--quant {quant}: unsupported; choose one of {', '.join(QUANTS)}")
    return quant


def check_out_path(out: Path) -> Path:
    """``--out`` must name a ``.gguf`` file (not a directory); returns it absolute. Creates nothing."""
    if out.suffix.lower() != GGUF_SUFFIX:
        raise InputError(f"--out {out}: the output must be a {GGUF_SUFFIX} file")
    if out.is_dir():
        raise InputError(f"--out {out}: is a directory; name the {GGUF_SUFFIX} file to write")
    return out.expanduser().resolve()


def make_out_dir(out: Path) -> None:
    """Create the output's directory once all other input has been checked."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--out {out}: cannot create its directory ({error.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"--out {out}: its directory is not writable")


def check_disk_space(directory: Path, checkpoint: Path, quant: str, *, merged: bool) -> None:
    """Refuse to start when the export's peak scratch use would not fit on the output's file system.

    The peak is the largest of: the merged checkpoint + the converter's f16; the f16 + its copy with
    doppel's metadata; the f16 + the quantized file (the step before each is deleted as soon as possible).
    """
    params, checkpoint_bytes = checkpoint_parameters(checkpoint)
    f16 = params * 2
    quantized = int(params * QUANTS[quant].bits_per_weight / 8) if quant != F16 else 0
    merged_bytes = checkpoint_bytes if merged else 0
    needed = int(max(merged_bytes + f16, 2 * f16, f16 + quantized) * _DISK_MARGIN) + _DISK_SLACK
    existing = next(folder for folder in (directory, *directory.parents) if folder.exists())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise InputError(
            f"not enough free disk space in {directory}: the export needs about {needed / GB:.1f} GB at its "
            f"peak, {free / GB:.1f} GB are free"
        )


def checkpoint_parameters(checkpoint: Path) -> tuple[int, int]:
    """(parameters, bytes) of a checkpoint's safetensors weights, read from their headers only."""
    params = total = 0
    for weights in sorted(checkpoint.glob("*.safetensors")):
        for entry in check_safetensors(weights).values():
            params += math.prod(int(dim) for dim in entry["shape"])
            start, end = entry["data_offsets"]
            total += int(end) - int(start)
    return params, total


def weights_bytes(checkpoint: Path) -> int:
    """The size on disk of a checkpoint's safetensors files."""
    return sum(path.stat().st_size for path in checkpoint.glob("*.safetensors"))


def verification_texts(run: ExportableRun, sessions: int) -> list[str]:
    """The validation sessions to verify on; an :class:`InputError` when the run's dataset is gone or has none."""
    dataset = run.dataset_path
    if dataset is None or not dataset.is_dir():
        raise InputError(
            f"{run.path}: verification needs the run's validation data, but its dataset {dataset} is gone; "
            "restore it, or pass --no-verify"
        )
    texts = validation_texts(dataset, sessions)
    if not texts:
        raise InputError(f"{dataset}: the validation split is empty, nothing to verify on; pass --no-verify")
    return texts
