"""The ``export`` stage: a trained run in, one GGUF file out (or a LoRA adapter GGUF beside its base GGUF).

    doppel export RUN --out MODEL.gguf [--quant q4_k_m|q5_k_m|q6_k|q8_0|f16] [--adapter-only] [--no-verify]

1. check everything cheap first: the run directory, the architecture (against llama.cpp's converter of the
   installed llama-cpp-python's version, fetched once, see :mod:`training.export.convert`), the validation data,
   the free disk space (:mod:`training.export.checks`);
2. load the trained model (LoRA merged into the base; a full fine-tune as is) and, for verification, record
   its next-token predictions on a few validation sessions;
3. convert to f16 GGUF with llama.cpp's ``convert_hf_to_gguf.py`` (``--adapter-only``: the base, and the
   adapter with ``convert_lora_to_gguf.py``, see :mod:`training.export.adapter`), then write doppel's metadata
   and make ``<|im_end|>`` the end-of-generation token (:mod:`doppel.formats.gguf_metadata`);
4. verify the f16 file against the recorded predictions (:mod:`training.export.verify`) — a mismatch stops here;
5. quantize through llama-cpp-python's C API and measure the perplexity change against f16;
6. rename the results into place. Everything is written in a scratch directory beside the output, removed at
   the end whatever happens, so a failed export leaves no partial file (:mod:`training.export.scratch`).

``--adapter-only`` writes the adapter to ``--out`` and the base as ``base-<name>-<hash>.<quant>.gguf`` beside
it; a base already there from an earlier export of the same base, quantization and llama.cpp is kept as is.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace

from training.export.adapter import export_adapter
from training.export.checks import (
    check_disk_space,
    check_out_path,
    check_quant,
    make_out_dir,
    verification_texts,
    weights_bytes,
)
from training.export.config import ExportConfig
from training.export.convert import check_architecture, convert_model, ensure_sources
from training.export.job import ExportJob, Progress
from training.export.merge import release_memory, save_merged, stop_token_id
from training.export.run import base_checkpoint, base_name, check_adapter_convertible, load_run
from training.export.scratch import remove_stale_scratch, scratch_dir
from training.export.summary import ExportSummary

log = logging.getLogger(__name__)


def export(settings: ExportConfig) -> ExportSummary:
    """Run the stage. Bad input raises :class:`InputError` before anything heavy runs."""
    started = time.perf_counter()
    quant = check_quant(settings.quant)
    out = check_out_path(settings.out)
    run = load_run(settings.run)
    if settings.adapter_only:
        check_adapter_convertible(run)
    sources = ensure_sources()
    checkpoint = run.model_dir if not run.is_adapter else base_checkpoint(run)
    architecture = check_architecture(sources, checkpoint)
    texts = verification_texts(run, settings.verify_sessions) if settings.verify else []
    check_disk_space(out.parent, checkpoint, quant, merged=run.is_adapter and not settings.adapter_only)
    make_out_dir(out)
    remove_stale_scratch(out)
    log.info("exporting %s (%s, %s) to %s", run.path, run.method, architecture, out)

    with scratch_dir(out) as scratch:
        job = ExportJob(settings, out, run, sources, checkpoint, texts, scratch)
        summary = export_adapter(job) if settings.adapter_only else export_model(job)
    return replace(summary, seconds=time.perf_counter() - started)


def export_model(job: ExportJob) -> ExportSummary:
    """One GGUF of the trained model: the LoRA merged into the base, or the full fine-tune."""
    run, scratch = job.run, job.scratch
    progress = Progress(5)
    what = "merging the LoRA adapter into the base" if run.is_adapter else "loading the fine-tuned model"
    progress.step("%s%s", what, " and recording its predictions on validation sessions" if job.verify else "")
    model, tokenizer = job.load_reference()
    stop_id = stop_token_id(tokenizer, run)
    if run.is_adapter:
        hf_dir = scratch / "merged"
        save_merged(model, tokenizer, hf_dir)
    else:
        hf_dir = run.model_dir
    checkpoint_bytes = weights_bytes(hf_dir)
    del model
    release_memory()  # the converter runs in another process: give it the memory back

    progress.step("converting to f16 GGUF with llama.cpp %s's convert_hf_to_gguf.py", job.sources.version)
    raw = scratch / "raw-f16.gguf"
    convert_model(job.sources, hf_dir, raw, model_name=f"doppel-{base_name(run)}")
    if run.is_adapter:
        shutil.rmtree(hf_dir)
    f16 = job.with_metadata(raw, scratch / "f16.gguf", "model", stop_id)

    agreement = f16_predictions = None
    if job.verify:
        progress.step("verifying the f16 file against the trained model")
        agreement, f16_predictions = job.verify_f16(tokenizer, f16)
    else:
        progress.step("verification skipped (--no-verify)")

    progress.step("quantizing to %s", job.quant)
    final = job.quantized(f16, scratch / f"model.{job.quant}.gguf")
    cost = job.measure_cost(final, f16_predictions)

    progress.step("writing %s", job.out)
    f16_bytes = f16.stat().st_size
    quantized_bytes = final.stat().st_size
    final.replace(job.out)
    return ExportSummary(
        out=job.out,
        quant=job.quant,
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
