#!/usr/bin/env python3
"""Native GBDT training against LightGBM, side by side: the same data, matched parameters.

For each dataset (written as CSV once): `wharf train --algorithm gbdt` (release build; the
training time it reports: binning and boosting, not reading the CSV) and LightGBM's Python API
(lightgbm.train on a numpy array already in memory: Dataset construction and boosting), both
on one thread, then Wharf on all cores. Printed: validation AUC (binary), macro AUC one-vs-rest
(multiclass) or RMSE (regression), and training seconds, with the ratios against the issue's
targets (AUC within 0.005 of LightGBM's, RMSE within 2 %, time at most 1.5x on one thread).

Matched parameters: 100 rounds, learning rate 0.1, leaf-wise growth with 31 leaves and no depth
limit, L2 1.0, min child hessian 1.0 (LightGBM min_data_in_leaf 1), 255 bins, no subsampling.

Needs numpy, scikit-learn and lightgbm (pip); xgboost too, to check that xgboost loads Wharf's
model and predicts what Wharf predicts. Usage:
    python3 bench/train_compare.py [--rows 200000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PARAMS = {"num_rounds": 100, "learning_rate": 0.1, "grow_policy": "lossguide", "max_leaves": 31, "lambda": 1.0,
          "min_child_weight": 1.0, "max_bin": 255}


def datasets(rows: int):
    from sklearn.datasets import load_breast_cancer, make_classification, make_regression
    rng = np.random.RandomState(2024)
    x = rng.normal(size=(rows, 30))
    x[:, 7] = rng.randint(0, 20, rows)
    x[:, 9] = np.exp(x[:, 9]) * 50
    w = rng.normal(size=30) * (rng.rand(30) < 0.6)
    s = x @ w * 0.3 + np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.2 * np.log(x[:, 9] / 50 + 1e-9).clip(-3, 3)
    y = (s - np.median(s) + rng.normal(size=rows) > 0).astype(float)
    x[rng.rand(*x.shape) < 0.02] = np.nan
    yield "synthetic binary", "binary", x, y
    cancer = load_breast_cancer()
    yield "breast cancer", "binary", cancer.data, cancer.target.astype(float)
    xr, yr = make_regression(n_samples=rows // 2, n_features=20, n_informative=12, noise=10, random_state=3)
    yr = yr + 30 * np.sin(xr[:, 0])
    yield "synthetic regression", "regression", xr, yr
    xm, ym = make_classification(n_samples=rows // 4, n_features=20, n_informative=10, n_classes=4, random_state=5)
    yield "synthetic 4-class", "multiclass", xm, ym.astype(float)


def write_csv(path: Path, x, y):
    header = ",".join(f"f{j}" for j in range(x.shape[1])) + ",label"
    data = np.column_stack([x, y])
    np.savetxt(path, data, delimiter=",", header=header, comments="", fmt="%.9g")
    # numpy writes nan as "nan": the readers take it as missing.


def score(task, y, p):
    from sklearn.metrics import mean_squared_error, roc_auc_score
    if task == "binary":
        return roc_auc_score(y, p)
    if task == "multiclass":
        return roc_auc_score(y, p, multi_class="ovr", average="macro")
    return mean_squared_error(y, p) ** 0.5


def main() -> int:
    import lightgbm as lgb
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wharf", default=str(ROOT / ".build/release/wharf"))
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wharf-train-bench-"))
    results = []
    for name, task, x, y in datasets(args.rows):
        split = int(len(y) * 0.8)
        train, valid = work / "train.csv", work / "valid.csv"
        write_csv(train, x[:split], y[:split])
        write_csv(valid, x[split:], y[split:])
        row = {"name": name, "task": task, "rows": split}
        for threads in (1, 0):
            model = work / "model.json"
            command = [args.wharf, "train", "--data", str(train), "--label", "label", "--task", task, "--algorithm", "gbdt",
                       "--out", str(model), "--json", "--seed", "1"]
            for key, value in PARAMS.items():
                command += ["--param", f"{key}={value}"]
            if threads:
                command += ["--param", f"nthread={threads}"]
            summary = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            # Training time as wharf measures it (binning included, CSV reading not, like lgb.train on an array).
            row[f"wharf_seconds_{threads or 'all'}"] = summary["trainSeconds"]
            row["wharf_read_seconds"] = summary["readSeconds"]
        predicted = work / "predicted.csv"
        subprocess.run([args.wharf, "predict", "--model", str(model), "--input", str(valid), "--output", str(predicted)], check=True)
        p = np.loadtxt(predicted, delimiter=",", skiprows=1)
        row["wharf_score"] = score(task, y[split:], p)
        try:
            import xgboost as xgb
            booster = xgb.Booster()
            booster.load_model(str(model))
            theirs = booster.predict(xgb.DMatrix(x[split:], feature_names=[f"f{j}" for j in range(x.shape[1])]))
            row["xgboost_max_diff"] = float(np.abs(theirs.reshape(p.shape) - p).max())
        except ImportError:
            pass
        params = {"objective": {"binary": "binary", "regression": "regression", "multiclass": "multiclass"}[task],
                  "learning_rate": 0.1, "num_leaves": 31, "max_depth": -1, "lambda_l2": 1.0, "min_sum_hessian_in_leaf": 1.0,
                  "min_data_in_leaf": 1, "max_bin": 255, "num_threads": 1, "verbose": -1, "seed": 1, "deterministic": True}
        if task == "multiclass":
            params["num_class"] = int(y.max()) + 1
        started = time.perf_counter()
        booster = lgb.train(params, lgb.Dataset(x[:split], y[:split]), num_boost_round=100)
        row["lightgbm_seconds"] = time.perf_counter() - started
        row["lightgbm_score"] = score(task, y[split:], booster.predict(x[split:]))
        results.append(row)
    print(f"{'dataset':<22} {'rows':>8} {'metric':>7} {'wharf':>9} {'lightgbm':>9} {'wharf 1T s':>10} {'all cores s':>11} {'lgbm 1T s':>9} {'time x':>7} {'xgb diff':>9}")
    passed = True
    for r in results:
        metric = "rmse" if r["task"] == "regression" else "auc"
        ratio = r["wharf_seconds_1"] / r["lightgbm_seconds"]
        if metric == "auc":
            quality = r["wharf_score"] >= r["lightgbm_score"] - 0.005
        else:
            quality = r["wharf_score"] <= r["lightgbm_score"] * 1.02
        passed &= quality and ratio <= 1.5
        print(f"{r['name']:<22} {r['rows']:>8,} {metric:>7} {r['wharf_score']:>9.5f} {r['lightgbm_score']:>9.5f} {r['wharf_seconds_1']:>10.2f} "
              f"{r['wharf_seconds_all']:>11.2f} {r['lightgbm_seconds']:>9.2f} {ratio:>7.2f} {r.get('xgboost_max_diff', float('nan')):>9.1e}"
              f"  {'ok' if quality else 'QUALITY'}{'' if ratio <= 1.5 else ' SLOW'}")
    print("PASS" if passed else "FAIL", "(AUC within 0.005 / RMSE within 2 % of LightGBM, one-thread time <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
