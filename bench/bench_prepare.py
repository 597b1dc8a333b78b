"""Benchmark ``doppel prepare`` against a plain ``json.load`` of the same export: wall time and peak RSS.

    make bench-prepare                      # 1,000,000 messages (writes a ~430 MB export once)
    .venv/bin/python bench/bench_prepare.py --messages 200000 --repeat 3

Each measurement runs in a fresh Python process. Time and memory are measured in separate runs: the
memory sampler (a thread reading /proc every 5 ms, see ``_MEASURE``) costs CPU, which json.load, on one
core, never misses, but prepare, busy on both cores, would (~8% of its time). Timing runs alternate
(json.load, prepare, json.load, ...) so that a noisy machine hurts both alike; the best wall time of
each is compared. A memory run of each reports the peak RSS of the process and its workers, summed. A
second, smaller export (a quarter of the messages) shows whether prepare's memory stays flat as the
export grows. Exports are cached under the data directory.

Goal (issue "doppel prepare"): prepare time <= 0.30x json.load, peak RSS <= 150 MB, flat with size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from doppel.paths import data_dir
from training.telegram.sample import write_sample_export

# Peak memory counts every process: prepare forks workers. A thread samples the RSS of this process and
# all its children every 5 ms and keeps the largest sum ("rss_mb"); RSS counts pages that parent and
# children share once per process, so the sum overstates rather than understates. "rss_bound_mb" adds
# this process's own peak to each child's peak (VmHWM, read just before the child is reaped), an upper
# bound that cannot miss a spike between samples.
_MEASURE = """
import json, os, resource, sys, threading, time
SAMPLE = {sample}
if SAMPLE:
    import psutil
    me = psutil.Process()
peak, child_peaks, done = [0], {{}}, threading.Event()
def sample():
    while not done.is_set():
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
                with open(f"/proc/{{child.pid}}/status") as status:
                    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
                child_peaks[child.pid] = max(child_peaks.get(child.pid, 0), hwm * 1024)
            except (psutil.Error, OSError, StopIteration):
                pass
        peak[0] = max(peak[0], total)
        done.wait(0.005)
sampler = threading.Thread(target=sample, daemon=True)
if SAMPLE:
    sampler.start()
started = time.perf_counter()
{body}
seconds = time.perf_counter() - started
done.set()
if SAMPLE:
    sampler.join()
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": seconds, "rss_mb": max(peak[0] / 2**20, own), "own_rss_mb": own,
                   "rss_bound_mb": own + sum(child_peaks.values()) / 2**20, "children": len(child_peaks)}}))
"""
_JSON_LOAD = "with open(sys.argv[1], 'rb') as f: json.load(f)"
_PREPARE = "from doppel.cli import main\nassert main(['prepare', sys.argv[1], '--out', sys.argv[2], '--quiet']) == 0"


def measure(body: str, *args: str, sample_memory: bool) -> dict[str, float]:
    """One run of ``body`` in a fresh process: its wall time, or (``sample_memory``) its peak memory."""
    code = _MEASURE.format(body=body, sample=sample_memory)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_for(messages: int, seed: int) -> Path:
    path = data_dir() / "bench" / f"export-{messages}-seed{seed}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing a {messages:,}-message sample export to {path} ...", flush=True)
        write_sample_export(path, seed=seed, messages=messages)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each contender")
    args = parser.parse_args()

    big = export_for(args.messages, args.seed)
    small = export_for(max(1000, args.messages // 4), args.seed)
    with tempfile.TemporaryDirectory(prefix="doppel-bench-") as scratch:
        out = str(Path(scratch) / "dataset")
        loads, prepares = [], []
        for _ in range(args.repeat):
            loads.append(measure(_JSON_LOAD, str(big), sample_memory=False)["seconds"])
            prepares.append(measure(_PREPARE, str(big), out, sample_memory=False)["seconds"])
        best_load = measure(_JSON_LOAD, str(big), sample_memory=True) | {"seconds": min(loads)}
        best_prepare = measure(_PREPARE, str(big), out, sample_memory=True) | {"seconds": min(prepares)}
        small_prepare = measure(_PREPARE, str(small), out, sample_memory=True)
        small_prepare["seconds"] = min(
            small_prepare["seconds"],
            *(measure(_PREPARE, str(small), out, sample_memory=False)["seconds"] for _ in range(2)),
        )
    size_mb = big.stat().st_size / 1e6
    print(f"\nexport: {args.messages:,} messages, {size_mb:.0f} MB ({big.name})")
    print(f"{'':24}{'wall s':>10}{'peak RSS MB':>14}{'main process':>14}{'upper bound':>13}{'workers':>9}")
    for label, run in (
        ("json.load", best_load),
        ("doppel prepare", best_prepare),
        ("prepare, 1/4 the export", small_prepare),
    ):
        print(
            f"{label:24}{run['seconds']:>10.2f}{run['rss_mb']:>14.0f}{run['own_rss_mb']:>14.0f}"
            f"{run['rss_bound_mb']:>13.0f}{run['children']:>9}"
        )
    print("(wall: best of the timing runs; peak RSS: all processes together, sampled every 5 ms in a separate")
    print(" run; upper bound: the sum of each one's peak)")
    time_ratio = best_prepare["seconds"] / best_load["seconds"]
    print(f"\ntime ratio prepare/json.load: {time_ratio:.2f}x (goal <= 0.30x)")
    print(f"RSS ratio prepare/json.load:  {best_prepare['rss_mb'] / best_load['rss_mb']:.3f}x")
    print(f"prepare peak RSS: {best_prepare['rss_mb']:.0f} MB (goal <= 150 MB)")
    print(
        f"RSS growth for 4x the export: {best_prepare['rss_mb'] / small_prepare['rss_mb']:.2f}x sampled, "
        f"{best_prepare['rss_bound_mb'] / small_prepare['rss_bound_mb']:.2f}x by each process's peak (flat = 1.0)"
    )
    print("  (sampled peaks depend on timing: whether the parent loads pyarrow before the last worker exits)")
    print(f"prepare throughput: {args.messages / best_prepare['seconds']:,.0f} messages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
