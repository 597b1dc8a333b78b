"""The ``export`` stage: a trained run in, one GGUF file out (or a LoRA adapter GGUF beside its base GGUF).

    doppel export RUN --out MODEL.gguf [--quant q4_k_m|q5_k_m|q6_k|q8_0|f16] [--adapter-only] [--no-verify]

1. check everything cheap first: the run directory, the architecture (against llama.cpp's converter of the
   installed llama-cpp-python's version, fetched once, see :mod:`training.export.convert`), the validation data,
   the free disk space;
2. load the trained model (LoRA merged into the base; a full fine-tune as is) and, for verification, record
   its next-token predictions on a few validation sessions;
3. convert to f16 GGUF with llama.cpp's ``convert_hf_to_gguf.py`` (``--adapter-only``: the base, and the
   adapter with ``convert_lora_to_gguf.py``), then write doppel's metadata and make ``<|im_end|>`` the
   end-of-generation token (:mod:`doppel.formats.gguf_metadata`);
4. verify the f16 file against the recorded predictions (:mod:`training.export.verify`) — a mismatch stops here;
5. quantize through llama-cpp-python's C API and measure the perplexity change against f16;
6. rename the results into place. Everything is written in a scratch directory beside the output, removed at
   the end whatever happens, so a failed export leaves no partial file.

``--adapter-only`` writes the adapter to ``--out`` and the base as ``base-<name>-<hash>.<quant>.gguf`` beside
it; a base already there from an earlier export of the same base, quantization and llama.cpp is kept as is.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import os
import re
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doppel.errors import InputError
from doppel.formats.gguf_metadata import read_doppel_metadata, read_fields, write_with_metadata
from training.export.convert import (
    ConverterSources,
    check_architecture,
    convert_lora,
    convert_model,
    ensure_sources,
)
from training.export.quantize import DEFAULT_QUANT, F16, QUANTS, file_type, quantize
from training.export.run import (
    ExportableRun,
    base_checkpoint,
    build_metadata,
    check_adapter_convertible,
    check_safetensors,
    load_run,
)
from training.export.verify import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_SESSIONS,
    Agreement,
    Predictions,
    QuantCost,
    encode_sessions,
    hf_predictions,
    quant_cost,
    validation_texts,
    verify_f16,
)

log = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
_SCRATCH_PREFIX = ".tmp-export-"
_DISK_MARGIN = 1.05
_DISK_SLACK = 64 << 20  # logs, tokenizer files, the adapter
GB = 1e9


@dataclass(frozen=True)
class ExportConfig:
    """Every setting of the stage; the CLI fills it from flags, tests build it directly."""

    run: Path
    out: Path
    quant: str = DEFAULT_QUANT
    adapter_only: bool = False
    verify: bool = True
    verify_sessions: int = DEFAULT_SESSIONS
    verify_max_tokens: int = DEFAULT_MAX_TOKENS


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote and measured."""

    out: Path  # the model, or with --adapter-only the adapter
    quant: str
    base_gguf: Path | None  # --adapter-only: the base GGUF beside the adapter
    base_reused: bool
    checkpoint_bytes: int  # the HF weights converted (merged model, full fine-tune, or the base)
    f16_bytes: int  # the f16 GGUF of the model (or of the base)
    quantized_bytes: int  # the model (or base) at --quant
    adapter_bytes: int | None
    agreement: Agreement | None
    cost: QuantCost | None
    seconds: float

    @property
    def compression(self) -> float:
        """How many times smaller than the f16 GGUF the quantized model is."""
        return self.f16_bytes / self.quantized_bytes if self.quantized_bytes else float("nan")

    def describe(self) -> str:
        minutes, seconds = divmod(round(self.seconds), 60)
        lines = []
        if self.base_gguf is not None:
            reused = " (kept from an earlier export)" if self.base_reused else ""
            lines.append(f"adapter {self.out} ({_size(self.adapter_bytes or 0)})")
            lines.append(f"base    {self.base_gguf} ({_size(self.quantized_bytes)}, {self.quant}){reused}")
        else:
            lines.append(f"model   {self.out} ({_size(self.quantized_bytes)}, {self.quant})")
        lines.append(
            f"size    HF checkpoint {_size(self.checkpoint_bytes)} → f16 {_size(self.f16_bytes)} → "
            f"{self.quant} {_size(self.quantized_bytes)} ({self.compression:.2f}× smaller than f16)"
        )
        if self.agreement is not None:
            lines.append(f"verify  f16 vs trained model: {self.agreement.describe()}")
        else:
            lines.append("verify  skipped (--no-verify)")
        if self.cost is not None:
            lines.append(f"quant   {self.cost.describe()}")
            advice = self.cost.advice()
            if advice is not None:
                lines.append(f"warning {advice}")
        lines.append(f"time    {minutes}m{seconds:02d}s")
        return "\n".join(lines)


class _Progress:
    """Numbered progress lines at INFO."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0

    def step(self, message: str, *args: Any) -> None:
        self.index += 1
        log.info(f"[{self.index}/{self.total}] {message}", *args)


def export(config: ExportConfig) -> ExportSummary:
    """Run the stage. Bad input raises :class:`InputError` before anything heavy runs."""
    started = time.perf_counter()
    quant = check_quant(config.quant)
    out = check_out_path(config.out)
    run = load_run(config.run)
    if config.adapter_only:
        check_adapter_convertible(run)
    sources = ensure_sources()
    checkpoint = run.model_dir if not run.is_adapter else base_checkpoint(run)
    architecture = check_architecture(sources, checkpoint)
    texts = _validation_texts(run, config) if config.verify else []
    check_disk_space(out.parent, checkpoint, quant, merged=run.is_adapter and not config.adapter_only)
    make_out_dir(out)
    remove_stale_scratch(out)
    log.info("exporting %s (%s, %s) to %s", run.path, run.method, architecture, out)

    scratch = out.parent / f"{_SCRATCH_PREFIX}{out.name}-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        job = _Export(config, quant, out, run, sources, checkpoint, texts, scratch)
        summary = job.run_adapter() if config.adapter_only else job.run_merged()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _with_time(summary, time.perf_counter() - started)


class _Export:
    """The steps of one export, sharing the scratch directory and what earlier steps produced."""

    def __init__(
        self,
        config: ExportConfig,
        quant: str,
        out: Path,
        run: ExportableRun,
        sources: ConverterSources,
        checkpoint: Path,
        texts: list[str],
        scratch: Path,
    ) -> None:
        self.config = config
        self.quant = quant
        self.out = out
        self.run = run
        self.sources = sources
        self.checkpoint = checkpoint
        self.texts = texts
        self.scratch = scratch
        self.sessions: list[list[int]] = []
        self.reference: Predictions | None = None

    @property
    def verify(self) -> bool:
        return self.config.verify

    def run_merged(self) -> ExportSummary:
        run, scratch = self.run, self.scratch
        progress = _Progress(5)
        what = "merging the LoRA adapter into the base" if run.is_adapter else "loading the fine-tuned model"
        progress.step("%s%s", what, " and recording its predictions on validation sessions" if self.verify else "")
        model, tokenizer = self._load_reference()
        stop_id = _stop_id(tokenizer, run)
        if run.is_adapter:
            hf_dir = scratch / "merged"
            from training.export.merge import save_merged

            save_merged(model, tokenizer, hf_dir)
        else:
            hf_dir = run.model_dir
        checkpoint_bytes = _weights_bytes(hf_dir)
        del model
        release_memory()  # the converter runs in another process: give it the memory back

        progress.step("converting to f16 GGUF with llama.cpp %s's convert_hf_to_gguf.py", self.sources.version)
        raw = scratch / "raw-f16.gguf"
        convert_model(self.sources, hf_dir, raw, model_name=f"doppel-{base_name(run)}")
        if run.is_adapter:
            shutil.rmtree(hf_dir)
        f16 = scratch / "f16.gguf"
        write_with_metadata(raw, f16, build_metadata(run, "model", **_converter_note(self.sources)), stop_id)
        raw.unlink()

        agreement = None
        if self.verify:
            progress.step("verifying the f16 file against the trained model")
            agreement, f16_predictions = self._verify_f16(tokenizer, f16)
        else:
            progress.step("verification skipped (--no-verify)")

        progress.step("quantizing to %s", self.quant)
        final = self._quantized(f16, scratch / f"model.{self.quant}.gguf")
        cost = None
        if self.verify and self.quant != F16:
            cost = quant_cost(self.quant, final, f16_predictions, self.sessions)
            _report_cost(cost)

        progress.step("writing %s", self.out)
        f16_bytes = f16.stat().st_size
        quantized_bytes = final.stat().st_size
        final.replace(self.out)
        return ExportSummary(
            out=self.out,
            quant=self.quant,
            base_gguf=None,
            base_reused=False,
            checkpoint_bytes=checkpoint_bytes,
            f16_bytes=f16_bytes,
            quantized_bytes=quantized_bytes,
            adapter_bytes=None,
            agreement=agreement,
            cost=cost,
            seconds=0.0,
        )

    def run_adapter(self) -> ExportSummary:
        run, scratch = self.run, self.scratch
        progress = _Progress(6)
        base_out = self.out.parent / base_file_name(run, self.quant)
        reuse = _reusable_base(base_out, run, self.quant, self.sources)
        if self.verify:
            progress.step("merging the adapter into the base to record the trained model's predictions")
            model, tokenizer = self._load_reference()
            del model
            release_memory()
        else:
            progress.step("loading the tokenizer")
            from training.export.merge import load_tokenizer

            tokenizer = load_tokenizer(run)
        stop_id = _stop_id(tokenizer, run)

        f16 = scratch / "base-f16.gguf"
        if reuse and not self.verify:
            progress.step("keeping the base %s from an earlier export", base_out.name)
        else:
            progress.step("converting the base to f16 GGUF with llama.cpp %s", self.sources.version)
            raw = scratch / "base-raw.gguf"
            convert_model(self.sources, self.checkpoint, raw, model_name=base_name(run))
            write_with_metadata(raw, f16, build_metadata(run, "base", **_converter_note(self.sources)), stop_id)
            raw.unlink()

        progress.step("converting the LoRA adapter with convert_lora_to_gguf.py")
        raw_adapter = scratch / "adapter-raw.gguf"
        convert_lora(self.sources, run.model_dir, self.checkpoint, raw_adapter)
        adapter = scratch / "adapter.gguf"
        adapter_metadata = build_metadata(run, "adapter", base_file=base_out.name, **_converter_note(self.sources))
        write_with_metadata(raw_adapter, adapter, adapter_metadata)
        raw_adapter.unlink()

        agreement = None
        if self.verify:
            progress.step("verifying the f16 base + adapter against the trained model")
            agreement, f16_predictions = self._verify_f16(tokenizer, f16, lora=adapter)
        else:
            progress.step("verification skipped (--no-verify)")

        if reuse:
            base_final = base_out
        else:
            progress.step("quantizing the base to %s", self.quant)
            base_final = self._quantized(f16, scratch / f"base.{self.quant}.gguf")
        cost = None
        if self.verify and self.quant != F16:
            cost = quant_cost(self.quant, base_final, f16_predictions, self.sessions, lora_path=adapter)
            _report_cost(cost)

        f16_bytes = f16.stat().st_size if f16.exists() else _estimated_f16_bytes(self.checkpoint)
        quantized_bytes = base_final.stat().st_size
        adapter_bytes = adapter.stat().st_size
        if not reuse:
            base_final.replace(base_out)
        adapter.replace(self.out)
        log.info("wrote %s and %s", self.out, base_out)
        return ExportSummary(
            out=self.out,
            quant=self.quant,
            base_gguf=base_out,
            base_reused=reuse,
            checkpoint_bytes=_weights_bytes(self.checkpoint),
            f16_bytes=f16_bytes,
            quantized_bytes=quantized_bytes,
            adapter_bytes=adapter_bytes,
            agreement=agreement,
            cost=cost,
            seconds=0.0,
        )

    def _load_reference(self) -> tuple[Any, Any]:
        """The trained model and tokenizer; with verification, its predictions recorded on the sessions."""
        from training.export.merge import load_trained

        model, tokenizer = load_trained(self.run)
        if self.verify:
            self.sessions = encode_sessions(tokenizer, self.texts, self.config.verify_max_tokens)
            self.reference = hf_predictions(model, self.sessions)
        return model, tokenizer

    def _verify_f16(self, tokenizer: Any, f16: Path, lora: Path | None = None) -> tuple[Agreement, Predictions]:
        assert self.reference is not None
        return verify_f16(f16, tokenizer, self.texts, self.sessions, self.reference, lora_path=lora)

    def _quantized(self, f16: Path, target: Path) -> Path:
        if self.quant == F16:
            return f16
        quantize(f16, target, self.quant)
        return target


def check_quant(quant: str) -> str:
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


def remove_stale_scratch(out: Path) -> None:
    """Delete the scratch of earlier exports to the same file whose process is gone (killed, power lost)."""
    for folder in out.parent.glob(f"{_SCRATCH_PREFIX}{out.name}-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            log.info("removing %s, left by an export that did not finish", folder.name)
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def base_name(run: ExportableRun) -> str:
    """A file-name-safe short name of the base (``SmolLM2-135M-Instruct.Q4_1``, ``Qwen2.5-7B-Instruct``)."""
    name = Path(run.base["source"].rstrip("/")).name
    name = name[: -len(GGUF_SUFFIX)] if name.lower().endswith(GGUF_SUFFIX) else name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "base"


def base_file_name(run: ExportableRun, quant: str) -> str:
    """``base-<name>-<hash>.<quant>.gguf``: one per base, quantization and identity, shared by adapters."""
    return f"base-{base_name(run)}-{run.base['sha256'][:8]}.{quant}{GGUF_SUFFIX}"


def check_disk_space(directory: Path, checkpoint: Path, quant: str, *, merged: bool) -> None:
    """Refuse to start when the export's peak scratch use would not fit on the output's file system.

    The peak is the largest of: the merged checkpoint + the converter's f16; the f16 + its copy with
    doppel's metadata; the f16 + the quantized file (the step before each is deleted as soon as possible).
    """
    params, checkpoint_bytes = count_parameters(checkpoint)
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


def count_parameters(checkpoint: Path) -> tuple[int, int]:
    """(parameters, bytes) of a checkpoint's safetensors weights, read from their headers only."""
    params = total = 0
    for weights in sorted(checkpoint.glob("*.safetensors")):
        for entry in check_safetensors(weights).values():
            params += math.prod(int(dim) for dim in entry["shape"])
            start, end = entry["data_offsets"]
            total += int(end) - int(start)
    return params, total


def release_memory() -> None:
    """Collect, then hand freed heap back to the OS: glibc keeps it otherwise, and the converter subprocess
    and llama.cpp's mapping of the f16 file would come on top of a model that is gone."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _weights_bytes(checkpoint: Path) -> int:
    return sum(path.stat().st_size for path in checkpoint.glob("*.safetensors"))


def _estimated_f16_bytes(checkpoint: Path) -> int:
    return count_parameters(checkpoint)[0] * 2


def _stop_id(tokenizer: Any, run: ExportableRun) -> int:
    from training.export.merge import stop_token_id

    return stop_token_id(tokenizer, run)


def _converter_note(sources: ConverterSources) -> dict[str, Any]:
    return {"converter": f"llama-cpp-python {sources.version}"}


def _reusable_base(path: Path, run: ExportableRun, quant: str, sources: ConverterSources) -> bool:
    """Whether ``path`` is the base GGUF this export would write (same base, quantization and converter)."""
    if not path.is_file():
        return False
    try:
        metadata = read_doppel_metadata(path)
        ftype = read_fields(path, lambda key: key == "general.file_type").get("general.file_type")
    except (OSError, ValueError, struct.error) as error:
        log.warning("%s exists but cannot be read (%s); it will be replaced", path, error)
        return False
    return (
        metadata.get("role") == "base"
        and metadata.get("base", {}).get("sha256") == run.base["sha256"]
        and metadata.get("converter") == _converter_note(sources)["converter"]
        and ftype == file_type(quant)
    )


def _validation_texts(run: ExportableRun, config: ExportConfig) -> list[str]:
    dataset = run.dataset_path
    if dataset is None or not dataset.is_dir():
        raise InputError(
            f"{run.path}: verification needs the run's validation data, but its dataset {dataset} is gone; "
            "restore it, or pass --no-verify"
        )
    texts = validation_texts(dataset, config.verify_sessions)
    if not texts:
        raise InputError(f"{dataset}: the validation split is empty, nothing to verify on; pass --no-verify")
    return texts


def _report_cost(cost: QuantCost) -> None:
    log.info("%s", cost.describe())
    advice = cost.advice()
    if advice is not None:
        log.warning("%s", advice)


def _with_time(summary: ExportSummary, seconds: float) -> ExportSummary:
    from dataclasses import replace

    return replace(summary, seconds=seconds)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"
