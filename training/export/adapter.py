"""``doppel export RUN --out ADAPTER.gguf --adapter-only``: the LoRA as a llama.cpp adapter GGUF, beside its base.

The adapter is converted with llama.cpp's ``convert_lora_to_gguf.py`` and written to ``--out``; the base, at
``--quant``, as ``base-<name>-<hash>.<quant>.gguf`` beside it, so that every adapter trained on one base shares
one file. A base already there from an earlier export of the same base, quantization and llama.cpp is kept as
is (and still verified with the new adapter unless ``--no-verify``). Library only;
:func:`training.export.pipeline.export` runs it.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

from doppel.formats.gguf_metadata import read_doppel_metadata, read_fields
from training.export.checks import checkpoint_parameters, weights_bytes
from training.export.convert import ConverterSources, convert_lora, convert_model
from training.export.job import ExportJob, Progress
from training.export.merge import load_tokenizer, release_memory, stop_token_id
from training.export.quantize import file_type
from training.export.run import ExportableRun, base_file_name, base_name
from training.export.summary import ExportSummary

log = logging.getLogger(__name__)


def export_adapter(job: ExportJob) -> ExportSummary:
    """The adapter GGUF at ``--out`` and the base GGUF beside it (converted, or kept from an earlier export)."""
    run, scratch = job.run, job.scratch
    progress = Progress(6)
    base_out = job.out.parent / base_file_name(run, job.quant)
    reuse = reusable_base(base_out, run, job.quant, job.sources)
    if job.verify:
        progress.step("merging the adapter into the base to record the trained model's predictions")
        model, tokenizer = job.load_reference()
        del model
        release_memory()
    else:
        progress.step("loading the tokenizer")
        tokenizer = load_tokenizer(run)
    stop_id = stop_token_id(tokenizer, run)

    f16 = scratch / "base-f16.gguf"
    if reuse and not job.verify:
        progress.step("keeping the base %s from an earlier export", base_out.name)
    else:
        progress.step("converting the base to f16 GGUF with llama.cpp %s", job.sources.version)
        raw = scratch / "base-raw.gguf"
        convert_model(job.sources, job.checkpoint, raw, model_name=base_name(run))
        job.with_metadata(raw, f16, "base", stop_id)

    progress.step("converting the LoRA adapter with convert_lora_to_gguf.py")
    raw_adapter = scratch / "adapter-raw.gguf"
    convert_lora(job.sources, run.model_dir, job.checkpoint, raw_adapter)
    adapter = job.with_metadata(raw_adapter, scratch / "adapter.gguf", "adapter", base_file=base_out.name)

    agreement = f16_predictions = None
    if job.verify:
        progress.step("verifying the f16 base + adapter against the trained model")
        agreement, f16_predictions = job.verify_f16(tokenizer, f16, lora=adapter)
    else:
        progress.step("verification skipped (--no-verify)")

    if reuse:
        base_final = base_out
    else:
        progress.step("quantizing the base to %s", job.quant)
        base_final = job.quantized(f16, scratch / f"base.{job.quant}.gguf")
    cost = job.measure_cost(base_final, f16_predictions, lora=adapter)

    # A base kept without verification was not converted again: estimate its f16 size from its parameters.
    f16_bytes = f16.stat().st_size if f16.exists() else checkpoint_parameters(job.checkpoint)[0] * 2
    quantized_bytes = base_final.stat().st_size
    adapter_bytes = adapter.stat().st_size
    if not reuse:
        base_final.replace(base_out)
    adapter.replace(job.out)
    log.info("wrote %s and %s", job.out, base_out)
    return ExportSummary(
        out=job.out,
        quant=job.quant,
        base_gguf=base_out,
        base_reused=reuse,
        checkpoint_bytes=weights_bytes(job.checkpoint),
        f16_bytes=f16_bytes,
        quantized_bytes=quantized_bytes,
        adapter_bytes=adapter_bytes,
        agreement=agreement,
        cost=cost,
        seconds=0.0,
    )


def reusable_base(path: Path, run: ExportableRun, quant: str, sources: ConverterSources) -> bool:
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
        and metadata.get("converter") == sources.name
        and ftype == file_type(quant)
    )
