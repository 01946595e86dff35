#!/usr/bin/env python3
"""Batch scoring end to end: `wharf score` on a CSV of --rows rows with the 100-tree yardstick
model (bench/models/yardstick.xgb.json, 30 features), timed from process start to the output
file in place, with --threads 1 and with all cores; peak memory (max RSS) alongside, to show it
stays flat as the input grows. Optionally the same scoring with xgboost in Python (pandas
read_csv + inplace_predict + to_csv) when those are installed (--peer).

The input is drawn like make_bench_models.make_data (normal values, an integer column, a skewed
column, ~2% empty cells), with the Python standard library only, and reused between runs.

Usage (after `swift build -c release`):
    python3 bench/score_bench.py                      # 2,000,000 rows
    python3 bench/score_bench.py --rows 5000000 --peer
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "bench/models/yardstick.xgb.json"


def make_input(path: Path, rows: int) -> None:
    rng = random.Random(2024)
    header = ",".join(f"f{i}" for i in range(30))
    # 20,000 distinct rows, repeated: drawing every row in Python would dominate the run.
    block = []
    for _ in range(20_000):
        cells = []
        for column in range(30):
            if rng.random() < 0.02:
                cells.append("")
            elif column == 7:
                cells.append(str(rng.randrange(20)))
            elif column == 9:
                cells.append(f"{math.exp(rng.gauss(0, 1)) * 50:.6g}")
            else:
                cells.append(f"{rng.gauss(0, 1):.6g}")
        block.append(",".join(cells))
    text = "\n".join(block) + "\n"
    with open(path, "w") as out:
        out.write(header + "\n")
        written = 0
        while written < rows:
            take = min(len(block), rows - written)
            out.write(text if take == len(block) else "\n".join(block[:take]) + "\n")
            written += take


def run_wharf(wharf: str, data: Path, output: Path, threads: int | None) -> dict:
    command = [wharf, "score", "--model", str(MODEL), "--input", str(data), "--output", str(output), "--json"]
    if threads:
        command += ["--threads", str(threads)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads(result.stdout)
    return {"rows": summary["rows"], "seconds": elapsed, "rss_mb": max(peak, before) / 1024}


def run_peer(data: Path, output: Path) -> dict | None:
    code = f"""
import time, pandas as pd, xgboost as xgb
t = time.perf_counter()
booster = xgb.Booster(); booster.load_model({str(MODEL)!r})
frame = pd.read_csv({str(data)!r})
scores = booster.inplace_predict(frame.values)
pd.DataFrame({{"probability": scores}}).to_csv({str(output)!r}, index=False)
print(len(frame))
"""
    try:
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        return {"rows": int(result.stdout.strip()), "seconds": time.perf_counter() - started}
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        print(f"peer skipped: {getattr(error, 'stderr', error)}".strip()[:300], file=sys.stderr)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wharf", default=str(ROOT / ".build/release/wharf"))
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--peer", action="store_true", help="also score with xgboost + pandas in Python")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="wharf-score-bench-"))
    data = work / f"rows-{args.rows}.csv"
    output = work / "scores.csv"
    try:
        make_input(data, args.rows)
        size_mb = data.stat().st_size / 1e6
        cores = os.cpu_count() or 1
        print(f"{args.rows:,} rows x 30 features ({size_mb:.0f} MB CSV), model {MODEL.name} (100 trees)")
        figures = []
        for threads in sorted({1, cores}):
            best = min((run_wharf(args.wharf, data, output, threads) for _ in range(3)), key=lambda r: r["seconds"])
            figures.append((f"wharf score --threads {threads}", best))
        if args.peer:
            peer = run_peer(data, work / "peer.csv")
            if peer:
                figures.append(("xgboost + pandas (Python)", peer))
        for name, figure in figures:
            rss = f"{figure['rss_mb']:.0f} MB" if "rss_mb" in figure else "-"
            print(f"  {name:<28} {figure['rows'] / figure['seconds']:>12,.0f} rows/s  {figure['seconds']:.2f} s  max RSS {rss}")
        best_rate = max(f["rows"] / f["seconds"] for n, f in figures if n.startswith("wharf"))
        print(f"  {'PASS' if best_rate >= 1_000_000 else 'FAIL'}  >= 1,000,000 rows/s end to end")
    finally:
        for path in work.iterdir():
            path.unlink()
        work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
