"""Benchmark ``doppel prepare`` against a plain ``json.load`` of the same export: wall time and peak RSS.

    make bench-prepare                      # 1,000,000 messages (writes a ~430 MB export once)
    .venv/bin/python bench/bench_prepare.py --messages 200000 --repeat 3

Each measurement runs in a fresh Python process that reports its own peak RSS, and the contenders
alternate (json.load, prepare, json.load, ...) so that a noisy machine hurts both alike; the best
wall time of each is compared. A second, smaller export (a quarter of the messages) shows whether
prepare's memory stays flat as the export grows. Exports are cached under the data directory.

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
from training.sample_export import write_sample_export

_MEASURE = """
import json, resource, sys, time
started = time.perf_counter()
{body}
print(json.dumps({{"seconds": time.perf_counter() - started,
                   "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
_JSON_LOAD = "with open(sys.argv[1], 'rb') as f: json.load(f)"
_PREPARE = "from doppel.cli import main\nassert main(['prepare', sys.argv[1], '--out', sys.argv[2], '--quiet']) == 0"


def measure(body: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE.format(body=body), *args], capture_output=True, text=True, check=False
    )
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
            loads.append(measure(_JSON_LOAD, str(big)))
            prepares.append(measure(_PREPARE, str(big), out))
        small_prepare = measure(_PREPARE, str(small), out)

    best_load = min(loads, key=lambda run: run["seconds"])
    best_prepare = min(prepares, key=lambda run: run["seconds"])
    size_mb = big.stat().st_size / 1e6
    print(f"\nexport: {args.messages:,} messages, {size_mb:.0f} MB ({big.name})")
    print(f"{'':24}{'wall s':>10}{'peak RSS MB':>14}")
    print(f"{'json.load':24}{best_load['seconds']:>10.2f}{best_load['rss_mb']:>14.0f}")
    print(f"{'doppel prepare':24}{best_prepare['seconds']:>10.2f}{best_prepare['rss_mb']:>14.0f}")
    print(f"{'prepare, 1/4 the export':24}{small_prepare['seconds']:>10.2f}{small_prepare['rss_mb']:>14.0f}")
    time_ratio = best_prepare["seconds"] / best_load["seconds"]
    print(f"\ntime ratio prepare/json.load: {time_ratio:.2f}x (goal <= 0.30x)")
    print(f"RSS ratio prepare/json.load:  {best_prepare['rss_mb'] / best_load['rss_mb']:.3f}x")
    print(f"prepare peak RSS: {best_prepare['rss_mb']:.0f} MB (goal <= 150 MB)")
    print(f"RSS growth for 4x the export: {best_prepare['rss_mb'] / small_prepare['rss_mb']:.2f}x (flat = 1.0)")
    print(f"prepare throughput: {args.messages / best_prepare['seconds']:,.0f} messages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
