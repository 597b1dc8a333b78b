"""Export benchmark: time and peak RSS of ``doppel export`` on the demo run, and, for every quantization, the file
size and the perplexity change against f16 on the demo's validation sessions.

    make demo && python bench/bench_export.py                 # the demo run, $DOPPEL_HOME/demo/run
    python bench/bench_export.py --run RUN [--sessions N] [--max-tokens N] [--skip-timing]

1. Timing: ``doppel export RUN --out model.gguf`` (q4_k_m, verification on) and the same with ``--adapter-only``,
   each in a fresh process whose peak RSS (``VmHWM``), and that of each converter subprocess it starts, is
   sampled from ``/proc`` every 20 ms. (``getrusage(RUSAGE_CHILDREN)`` would not do: a child forked from a
   big parent inherits the parent's high-water mark.)
2. Quantizations: the run is exported once at f16, checked against the merged transformers model on all the
   validation sessions, then quantized to each type through llama-cpp-python; each file's perplexity on the
   same sessions is compared with the f16 file's. Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from doppel.paths import data_dir


def measure_export(run: Path, out: Path, *flags: str) -> dict[str, float]:
    """Run ``doppel export`` in a fresh process; print its summary, return wall time and peak RSS (MB)."""
    import psutil

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "doppel.cli", "export", str(run), "--out", str(out), *flags]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, text=True)
        peaks: dict[str, float] = {"export": 0.0, "converter": 0.0}
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                family = [watched, *watched.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for member in family:
                kind = "export" if member.pid == process.pid else "converter"
                peaks[kind] = max(peaks[kind], _high_water_mb(member.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"export failed ({process.returncode}):\n{stderr.read()[-3000:]}")
        print(stdout.read().rstrip())
    return {"seconds": seconds, "rss_mb": peaks["export"], "converter_rss_mb": peaks["converter"]}


def _high_water_mb(pid: int) -> float:
    """A process's peak resident set so far (Linux ``VmHWM``), 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def quant_table(run_dir: Path, scratch: Path, sessions_limit: int, max_tokens: int) -> None:
    import gc

    from training.export import ExportConfig, export
    from training.export.merge import load_trained
    from training.export.quantize import QUANTS, quantize
    from training.export.run import load_run
    from training.export.verify import encode_sessions, hf_predictions, quant_cost, validation_texts, verify_f16

    run = load_run(run_dir)
    assert run.dataset_path is not None
    texts = validation_texts(run.dataset_path, sessions_limit)
    model, tokenizer = load_trained(run)
    sessions = encode_sessions(tokenizer, texts, max_tokens)
    reference = hf_predictions(model, sessions)
    del model
    gc.collect()
    f16 = scratch / "f16.gguf"
    export(ExportConfig(run=run_dir, out=f16, quant="f16", verify=False))
    agreement, f16_predictions = verify_f16(f16, tokenizer, texts, sessions, reference)
    tokens = sum(len(ids) for ids in sessions)
    print(f"\nf16 vs the merged transformers model on {len(sessions)} validation sessions ({tokens:,} tokens):")
    print(f"  {agreement.describe()}\n")
    rows = [("f16", f16.stat().st_size, f16_predictions.perplexity, 0.0, 1.0)]
    for name in QUANTS:
        if name == "f16":
            continue
        path = scratch / f"{name}.gguf"
        quantize(f16, path, name)
        cost = quant_cost(name, path, f16_predictions, sessions)
        rows.append((name, path.stat().st_size, cost.perplexity, cost.change, cost.top1_agreement))
        path.unlink()
    f16_size = rows[0][1]
    print("| quantization | file size | vs f16 | perplexity | change vs f16 | top-1 agreement with f16 |")
    print("|---|---|---|---|---|---|")
    for name, size, perplexity, change, top1 in sorted(rows, key=lambda row: -row[1]):
        print(
            f"| {name} | {size / 1e6:.1f} MB | {size / f16_size:.2f}× | {perplexity:.3f} | {change:+.2%} | {top1:.1%} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=data_dir() / "demo" / "run", help="default: the demo run")
    parser.add_argument("--sessions", type=int, default=0, help="validation sessions for the table (0: all)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="tokens per session at most")
    parser.add_argument("--skip-timing", action="store_true", help="only the quantization table")
    args = parser.parse_args()
    if not (args.run / "run.json").is_file():
        raise SystemExit(f"{args.run}: no run there; `make demo` trains one, or pass --run RUN")
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        scratch = Path(folder)
        if not args.skip_timing:
            for flags in ([], ["--adapter-only"]):
                label = " ".join(["doppel export RUN --out model.gguf", *flags])
                print(f"== {label}")
                result = measure_export(args.run, scratch / "timed" / "model.gguf", *flags)
                print(
                    f"-- {result['seconds']:.1f} s wall, peak RSS {result['rss_mb']:.0f} MB "
                    f"(llama.cpp's converter subprocess: {result['converter_rss_mb']:.0f} MB)\n"
                )
        quant_table(args.run, scratch, args.sessions, args.max_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
