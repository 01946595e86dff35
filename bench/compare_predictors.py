#!/usr/bin/env python3
"""Side-by-side prediction speed: wharf vs xgboost, lightgbm and onnxruntime, on the same rows.

One shared dataset (default 100k rows x 30 features, fixed seed, the distribution of
make_bench_models.make_data, ~2% NaN) is generated once and written once as CSV to a temp dir.
Then, for batch sizes 1 (single-row latency), 64, 1024 and "all rows in one call":

  * wharf bench --input that.csv --json  (subprocess) for yardstick.xgb.json and yardstick.lgb.txt,
    --threads 1; plus --threads 2 at batch 1024 for the scaling line
  * xgboost   Booster.inplace_predict(X[slice])         nthread=1
  * lightgbm  Booster.predict(X[slice], num_threads=1)
  * onnxruntime InferenceSession (intra_op=1, inter_op=1) on yardstick.{xgb,lgb}.onnx, float32

Python predictors are timed with time.perf_counter over a loop of calls that cycles through the
rows (after a warm-up): a fixed number of calls at batch 1, whole passes over the data until
--min-seconds have gone by otherwise. wharf times itself, in process, after its own warm-up; its
runs are sized to take about --min-seconds too (rerun with more rows when one took under half).
Every configuration is measured in --repeat interleaved rounds and the fastest round is reported,
with the spread between rounds; the CPU time other processes took during the run is reported too.
Before measuring, wharf predict, the native libraries and onnxruntime are checked to agree on the
first 2000 rows.

The script sets OMP_NUM_THREADS=1 before importing numpy/xgboost/lightgbm: on a 2-core machine
OpenMP spin-waiting makes small xgboost predicts ~100x slower otherwise.

Usage (from the repository root, after `swift build -c release`):
    /tmp/wharf-py/bin/python bench/compare_predictors.py             # full run, ~2 minutes on 2 cores
    /tmp/wharf-py/bin/python bench/compare_predictors.py --quick     # smoke run, ~20 s
    /tmp/wharf-py/bin/python bench/compare_predictors.py --json out.json
"""
from __future__ import annotations

import os
import sys

# Must happen before numpy / xgboost / lightgbm / onnxruntime are imported: OpenMP reads it once,
# when its runtime starts.
_PREVIOUS_OMP = os.environ.get("OMP_NUM_THREADS")
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import make_bench_models  # noqa: E402

MODELS = {
    # key: (wharf model file, onnx twin)
    "xgb": ("yardstick.xgb.json", "yardstick.xgb.onnx"),
    "lgb": ("yardstick.lgb.txt", "yardstick.lgb.onnx"),
}
NATIVE = {"xgb": "xgboost", "lgb": "lightgbm"}


# ---------------------------------------------------------------------------------------------
# data

def make_rows(n_rows: int, seed: int) -> np.ndarray:
    """`n_rows` rows drawn like make_bench_models.make_data (that function, with N_ROWS and SEED
    swapped for the call), C-contiguous float64 with ~2% NaN."""
    saved = make_bench_models.N_ROWS, make_bench_models.SEED
    make_bench_models.N_ROWS, make_bench_models.SEED = n_rows, seed
    try:
        X, _ = make_bench_models.make_data()
    finally:
        make_bench_models.N_ROWS, make_bench_models.SEED = saved
    return np.ascontiguousarray(X, dtype=np.float64)


def write_csv(path: Path, X: np.ndarray, header: list[str]) -> None:
    """Shortest round-trip reprs (so wharf parses exactly the doubles Python holds), empty cells
    for NaN."""
    body = "\n".join(",".join(map(repr, row)) for row in X.tolist()).replace("nan", "")
    path.write_text(",".join(header) + "\n" + body + "\n")


# ---------------------------------------------------------------------------------------------
# wharf

class Wharf:
    def __init__(self, binary: Path):
        self.binary = binary
        self.env = dict(os.environ)

    def _run(self, *args: str) -> str:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env)
        if proc.returncode != 0:
            raise RuntimeError(f"wharf {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def inspect(self, model: Path) -> dict:
        return json.loads(self._run("inspect", "--model", str(model)))

    def predict(self, model: Path, csv: Path, out: Path) -> np.ndarray:
        self._run("predict", "--model", str(model), "--input", str(csv), "--output", str(out))
        return np.loadtxt(out, delimiter=",", skiprows=1, ndmin=1)

    def bench(self, model: Path, csv: Path, *, rows: int, batch: int, threads: int, seed: int) -> dict:
        start = time.perf_counter()
        out = self._run("bench", "--model", str(model), "--input", str(csv), "--rows", str(rows),
                        "--batch", str(batch), "--threads", str(threads), "--seed", str(seed), "--json")
        result = json.loads(out)
        result["process_seconds"] = time.perf_counter() - start
        return result


def round_up(value: float, multiple: int) -> int:
    return max(multiple, int(math.ceil(value / multiple)) * multiple)


def measure_wharf(wharf: Wharf, model: Path, csv: Path, *, n_rows: int, batch: int, threads: int,
                  seed: int, min_seconds: float, rate_hint: float | None,
                  rows: int | None = None) -> dict:
    """One `wharf bench` run of `rows` rows per thread, or sized to take about min_seconds (from
    rate_hint, rows/s per thread, when known) and rerun with more rows if it took under half of
    that."""
    if rows is None:
        rows = round_up(n_rows, batch)                  # at least one pass over the data
        if rate_hint:
            rows = max(rows, round_up(rate_hint * min_seconds * 1.1, batch))
        fixed = False
    else:
        fixed = True
    result = wharf.bench(model, csv, rows=rows, batch=batch, threads=threads, seed=seed)
    if not fixed and result["seconds"] < min_seconds / 2:
        factor = min_seconds * 1.1 / max(result["seconds"], 1e-4)
        rows = min(round_up(rows * factor, batch), round_up(1e9, batch))
        result = wharf.bench(model, csv, rows=rows, batch=batch, threads=threads, seed=seed)
    result["rows_per_thread"] = rows
    return result


class CPUWatch:
    """CPU time other processes take while the benchmark runs (Linux /proc/stat), in CPUs."""

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = (sum(fields[:8]) - idle) / hz              # user..steal, without guest (counted in user)
        own = os.times()
        mine = own.user + own.system + own.children_user + own.children_system
        return time.monotonic(), busy, mine

    def others(self) -> float | None:
        """Average CPUs busy with other processes since the start (or the last call)."""
        now = self._snapshot()
        if now is None or self.start is None:
            return None
        (t0, b0, m0), (t1, b1, m1) = self.start, now
        self.start = now
        return max(0.0, ((b1 - b0) - (m1 - m0)) / max(t1 - t0, 1e-3))


# ---------------------------------------------------------------------------------------------
# Python predictors

def batch_views(X: np.ndarray, batch: int) -> list[np.ndarray]:
    """Consecutive, non-overlapping row slices (views) of `batch` rows, as wharf bench cycles."""
    return [X[start:start + batch] for start in range(0, len(X) - batch + 1, batch)]


def time_python(call, views: list[np.ndarray], *, fixed_calls: int | None, min_seconds: float,
                max_seconds: float, offset: int = 0) -> tuple[int, float]:
    """Calls `call(view)` cycling through `views` (from `offset`), after a short warm-up:
    `fixed_calls` calls, or else whole passes until min_seconds have gone by. Returns
    (calls, seconds); stops early after max_seconds."""
    count = len(views)
    warmup = min(count, 200) if fixed_calls else min(count, 2)
    for i in range(warmup):
        call(views[(offset + i) % count])
    perf_counter = time.perf_counter
    calls = 0
    start = perf_counter()
    if fixed_calls:
        i = offset % count
        while calls < fixed_calls:
            chunk = min(fixed_calls - calls, 1000)
            for _ in range(chunk):
                call(views[i])
                i += 1
                if i == count:
                    i = 0
            calls += chunk
            if perf_counter() - start > max_seconds:
                break
    else:
        while True:
            for view in views:
                call(view)
            calls += count
            elapsed = perf_counter() - start
            if elapsed >= min_seconds or elapsed >= max_seconds:
                break
    return calls, perf_counter() - start


def python_predictors(models_dir: Path, X: np.ndarray):
    """(name, model key, call, input matrix, version) for every Python predictor."""
    import lightgbm as lgb
    import onnxruntime as ort
    import xgboost as xgb

    xb = xgb.Booster(model_file=str(models_dir / MODELS["xgb"][0]))
    xb.set_param({"nthread": 1})
    lb = lgb.Booster(model_file=str(models_dir / MODELS["lgb"][0]))
    X32 = np.ascontiguousarray(X, dtype=np.float32)

    def ort_session(path: Path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3    # lgb converter declares label shape [1]: harmless warning
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        input_name = sess.get_inputs()[0].name
        outputs = [o.name for o in sess.get_outputs() if o.name == "probabilities"] or None
        run = sess.run
        return lambda v: run(outputs, {input_name: v})

    def lgb_predict(v):
        return lb.predict(v, num_threads=1)

    return [
        ("xgboost inplace_predict", "xgb", xb.inplace_predict, X, f"xgboost {xgb.__version__}"),
        ("lightgbm predict", "lgb", lgb_predict, X, f"lightgbm {lgb.__version__}"),
        ("onnxruntime xgb.onnx", "xgb", ort_session(models_dir / MODELS["xgb"][1]), X32,
         f"onnxruntime {ort.__version__}"),
        ("onnxruntime lgb.onnx", "lgb", ort_session(models_dir / MODELS["lgb"][1]), X32,
         f"onnxruntime {ort.__version__}"),
    ]


def proba(output) -> np.ndarray:
    """Positive-class probability from any predictor's output."""
    if isinstance(output, list):                                  # onnxruntime
        output = next(o for o in output if getattr(o, "ndim", 0) == 2)
    output = np.asarray(output, dtype=np.float64)
    return output[:, 1] if output.ndim == 2 else output


# ---------------------------------------------------------------------------------------------
# report

def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def fmt_micros(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e5:
        return f"{value / 1e3:,.0f}ms"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def batch_label(batch: int, n_rows: int) -> str:
    return f"all={batch}" if batch == n_rows else str(batch)


def print_table(title: str, names: list[str], batches: list[int], n_rows: int, cell) -> None:
    width = max(len(n) for n in names) + 2
    cols = [batch_label(b, n_rows) for b in batches]
    colw = max(11, *(len(c) + 2 for c in cols))
    print(f"\n{title}")
    print("".ljust(width) + "".join(c.rjust(colw) for c in cols))
    for name in names:
        print(name.ljust(width) + "".join(cell(name, b).rjust(colw) for b in batches))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wharf", type=Path, default=ROOT / ".build" / "release" / "wharf",
                        help="the wharf binary (default: .build/release/wharf)")
    parser.add_argument("--models", type=Path, default=BENCH / "models", help="model directory")
    parser.add_argument("--rows", type=int, help="rows in the shared dataset (default 100000; --quick 10000)")
    parser.add_argument("--seed", type=int, default=2024,
                        help="dataset seed (default 2024; the models were trained on seed 42)")
    parser.add_argument("--single-calls", type=int,
                        help="timed batch-1 calls per Python predictor and round (default 8000, i.e. "
                             "24000 over 3 rounds; --quick 1000)")
    parser.add_argument("--min-seconds", type=float,
                        help="least timed seconds per measurement (default 0.5; --quick 0.15)")
    parser.add_argument("--repeat", type=int,
                        help="interleaved rounds; the best is reported (default 3; --quick 2)")
    parser.add_argument("--max-seconds", type=float, default=10.0,
                        help="stop a Python measurement after this many seconds (default 10)")
    parser.add_argument("--quick", action="store_true", help="fast smoke run: fewer rows, shorter timings")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to FILE as JSON")
    parser.add_argument("--keep-data", action="store_true", help="keep the temp dir with the CSV")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the check that all predictors agree on the first rows")
    args = parser.parse_args()

    n_rows = args.rows or (10_000 if args.quick else 100_000)
    single_calls = args.single_calls or (1_000 if args.quick else 8_000)
    min_seconds = args.min_seconds or (0.15 if args.quick else 0.5)
    repeat = max(1, args.repeat or (2 if args.quick else 3))
    batches = sorted({1, 64, 1024, n_rows})
    batches = [b for b in batches if b <= n_rows]
    scaling_batch = 1024 if n_rows >= 1024 else n_rows

    if not args.wharf.is_file() or not os.access(args.wharf, os.X_OK):
        print(f"error: no wharf binary at {args.wharf}; build it with `swift build -c release` "
              f"or pass --wharf PATH", file=sys.stderr)
        return 2
    note = f" (was {_PREVIOUS_OMP!r})" if _PREVIOUS_OMP not in (None, "1") else ""
    print(f"OMP_NUM_THREADS=1 set before importing xgboost/lightgbm{note}: on a 2-core machine "
          f"OpenMP spin-waiting makes small predicts ~100x slower otherwise")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"wharf: {args.wharf}")

    cpu_watch = CPUWatch()
    time.sleep(0.5)
    idle_load = cpu_watch.others()
    if idle_load is not None:
        print(f"other processes are using {idle_load:.2f} of {os.cpu_count()} CPUs right now"
              + ("  -- WARNING: figures will be noisy" if idle_load > 0.1 else ""))
    cpu_watch = CPUWatch()

    wharf = Wharf(args.wharf)
    model_paths = {k: args.models / files[0] for k, files in MODELS.items()}
    figures: dict = {
        "config": {"rows": n_rows, "seed": args.seed, "batches": batches, "single_calls": single_calls,
                   "min_seconds": min_seconds, "repeat": repeat, "quick": args.quick, "wharf": str(args.wharf),
                   "omp_num_threads": os.environ["OMP_NUM_THREADS"], "cpus": os.cpu_count()},
        "results": [],
    }

    # -- the shared dataset, one CSV per distinct header wharf needs (one for the yardsticks)
    started = time.perf_counter()
    X = make_rows(n_rows, args.seed)
    headers = {}
    for key, path in model_paths.items():
        info = wharf.inspect(path)
        if info["features"] != X.shape[1]:
            raise SystemExit(f"{path.name} reads {info['features']} features, the dataset has {X.shape[1]}")
        headers[key] = info.get("feature_names") or None
    named = {tuple(h) for h in headers.values() if h}
    tmp = Path(tempfile.mkdtemp(prefix="wharf-compare-"))
    csv_for: dict[str, Path] = {}
    written: dict[tuple, Path] = {}
    for key in model_paths:
        # A model without names takes the columns in order, so any one header does for it.
        header = tuple(headers[key]) if headers[key] else (next(iter(named)) if len(named) == 1 else
                                                           tuple(f"f{i}" for i in range(X.shape[1])))
        if header not in written:
            written[header] = tmp / f"rows{len(written) or ''}.csv"
            write_csv(written[header], X, list(header))
        csv_for[key] = written[header]
    nan_share = float(np.isnan(X).mean())
    print(f"dataset: {n_rows:,} rows x {X.shape[1]} features, seed {args.seed}, {nan_share:.1%} NaN, "
          f"{len(written)} CSV file(s) in {tmp} ({time.perf_counter() - started:.1f} s)")

    try:
        predictors = python_predictors(args.models, X)
        figures["config"]["versions"] = sorted({p[4] for p in predictors})
        print("versions: " + ", ".join(figures["config"]["versions"]))

        # -- sanity: every predictor gives the same probabilities on the first rows
        if not args.no_check:
            n_check = min(2000, n_rows)
            check_csv = tmp / "check.csv"
            checks = {}
            for key in model_paths:
                header = next(h for h, p in written.items() if p == csv_for[key])
                write_csv(check_csv, X[:n_check], list(header))
                p_wharf = wharf.predict(model_paths[key], check_csv, tmp / f"check-{key}.out")
                for name, pkey, call, data, _ in predictors:
                    if pkey == key:
                        diff = np.abs(proba(call(data[:n_check])) - p_wharf)
                        checks[f"wharf {key} vs {name}"] = {"max_abs_diff": float(diff.max()),
                                                             "rows_over_1e-5": int((diff > 1e-5).sum())}
            figures["check"] = {"rows": n_check, **checks}
            print(f"check on the first {n_check} rows (ONNX computes in float32):")
            for what, c in checks.items():
                print(f"  {what}: max |diff| {c['max_abs_diff']:.3g}, rows > 1e-5: {c['rows_over_1e-5']}")

        # -- measurements: `repeat` interleaved rounds over every configuration, best round kept
        wharf_configs = []
        for key in model_paths:
            wharf_configs += [(key, b, 1) for b in [scaling_batch] + [b for b in batches if b != scaling_batch]]
            wharf_configs.append((key, scaling_batch, 2))
        runs: dict[tuple[str, int, int], list[dict]] = {}
        print(f"\nmeasuring: {len(wharf_configs)} wharf + {len(predictors) * len(batches)} Python "
              f"configurations, best of {repeat} interleaved rounds", flush=True)
        for round_ in range(repeat):
            round_start = time.perf_counter()
            # wharf (subprocess; it times itself, in process)
            for key, batch, threads in wharf_configs:
                name = f"wharf {key}"
                previous = runs.get((name, batch, threads), [])
                if threads > 1:      # same rows per thread as the 1-thread run of this round
                    same = runs[(name, batch, 1)][-1]
                    r = measure_wharf(wharf, model_paths[key], csv_for[key], n_rows=n_rows, batch=batch,
                                      threads=threads, seed=args.seed, min_seconds=min_seconds,
                                      rate_hint=None, rows=same["rows_per_thread"])
                else:
                    if previous:
                        hint = previous[-1]["rows_per_second"]
                    else:            # first round: the last configuration measured for this model
                        hint = next((v[-1]["rows_per_second"] for (n, _, t), v in reversed(runs.items())
                                     if n == name and t == 1), None)
                    r = measure_wharf(wharf, model_paths[key], csv_for[key], n_rows=n_rows, batch=batch,
                                      threads=threads, seed=args.seed, min_seconds=min_seconds,
                                      rate_hint=hint)
                runs.setdefault((name, batch, threads), []).append({
                    "predictor": name, "model": key, "batch": batch, "threads": threads,
                    "calls": r["rows"] // (batch * threads), "rows": r["rows"],
                    "rows_per_thread": r["rows_per_thread"], "seconds": r["seconds"],
                    "rows_per_second": r["rows_per_second"], "micros_per_call": r["micros_per_call"],
                    "process_seconds": r["process_seconds"], "round": round_})
            # Python predictors (this process, one thread)
            for name, key, call, data, _ in predictors:
                for batch in batches:
                    fixed = single_calls if batch == 1 else None
                    calls, seconds = time_python(call, batch_views(data, batch), fixed_calls=fixed,
                                                 min_seconds=min_seconds, max_seconds=args.max_seconds,
                                                 offset=round_ * (fixed or 0))
                    runs.setdefault((name, batch, 1), []).append({
                        "predictor": name, "model": key, "batch": batch, "threads": 1, "calls": calls,
                        "rows": calls * batch, "seconds": seconds,
                        "rows_per_second": calls * batch / seconds,
                        "micros_per_call": seconds * 1e6 / calls, "round": round_})
            print(f"  round {round_ + 1}/{repeat}: {time.perf_counter() - round_start:.1f} s", flush=True)
    finally:
        if args.keep_data:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # best round per configuration; spread = fastest / slowest round - 1
    results: dict[tuple[str, int, int], dict] = {}
    for config, entries in runs.items():
        best = dict(max(entries, key=lambda e: e["rows_per_second"]))
        rates = [e["rows_per_second"] for e in entries]
        best["spread"] = max(rates) / min(rates) - 1
        best["rounds"] = entries
        results[config] = best
        figures["results"].append(best)
    background = cpu_watch.others()
    figures["background_cpus"] = background
    if background is not None:
        print(f"other processes used {background:.2f} of {os.cpu_count()} CPUs on average during the run"
              + ("  -- WARNING: figures are noisy, the 2-thread line most of all" if background > 0.1 else ""))

    # -- tables
    names = ["wharf xgb", "xgboost inplace_predict", "onnxruntime xgb.onnx",
             "wharf lgb", "lightgbm predict", "onnxruntime lgb.onnx"]

    def get(name: str, batch: int, threads: int = 1, field: str = "rows_per_second"):
        entry = results.get((name, batch, threads))
        return entry[field] if entry else None

    print(f"\n=== {n_rows:,} rows x {X.shape[1]} features, 1 thread, same rows for every predictor, "
          f"best of {repeat} ===")
    print_table("rows per second", names, batches, n_rows, lambda n, b: fmt_rate(get(n, b)))
    print_table("microseconds per call", names, batches, n_rows,
                lambda n, b: fmt_micros(get(n, b, field="micros_per_call")))
    if repeat > 1:
        print_table("spread between rounds (fastest / slowest - 1)", names, batches, n_rows,
                    lambda n, b: "-" if get(n, b) is None else f"{get(n, b, field='spread'):.0%}")

    ratio_lines = [
        ("wharf xgb / xgboost", "wharf xgb", "xgboost inplace_predict"),
        ("wharf lgb / lightgbm", "wharf lgb", "lightgbm predict"),
        ("wharf xgb / onnxruntime", "wharf xgb", "onnxruntime xgb.onnx"),
        ("wharf lgb / onnxruntime", "wharf lgb", "onnxruntime lgb.onnx"),
    ]
    ratios: dict = {}
    for label, mine, theirs in ratio_lines:
        ratios[label] = {}
        for b in batches:
            a, c = get(mine, b), get(theirs, b)
            ratios[label][str(b)] = a / c if a and c else None
    print_table("throughput ratio (rows/s), higher is better for wharf", [r[0] for r in ratio_lines],
                batches, n_rows, lambda n, b: fmt_ratio(ratios[n][str(b)]))

    # -- targets
    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "MISS")

    targets = []
    for b in [b for b in (scaling_batch, n_rows) if b > 1]:
        r = ratios["wharf xgb / xgboost"][str(b)]
        targets.append((f"wharf xgb / xgboost inplace_predict at batch {batch_label(b, n_rows)} >= 2x",
                        fmt_ratio(r), verdict(None if r is None else r >= 2)))
    for key in model_paths:
        us = get(f"wharf {key}", 1, field="micros_per_call")
        targets.append((f"wharf {key} single-row latency <= 2 us", f"{us:.3f} us" if us else "-",
                        verdict(None if us is None else us <= 2)))
    scaling = {}
    for key in model_paths:
        one, two = get(f"wharf {key}", scaling_batch, 1), get(f"wharf {key}", scaling_batch, 2)
        scaling[key] = two / one if one and two else None
        spread = max(get(f"wharf {key}", scaling_batch, t, "spread") or 0 for t in (1, 2))
        targets.append((f"wharf {key} 2-thread / 1-thread rows/s at batch {scaling_batch} "
                        f"({fmt_rate(two)} / {fmt_rate(one)}, spread {spread:.0%})",
                        fmt_ratio(scaling[key]), "info"))
    print("\ntargets")
    tw = max(len(t[0]) for t in targets) + 2
    for what, value, mark in targets:
        print(f"  {what.ljust(tw)}{value:>10}  {mark}")

    figures["ratios"] = ratios
    figures["scaling_2_over_1"] = scaling
    figures["targets"] = [{"target": t[0], "value": t[1], "verdict": t[2]} for t in targets]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
