#!/usr/bin/env python3
"""Build the "yardstick" benchmark models in bench/models/.

* yardstick.xgb.json  XGBoost binary:logistic, 100 trees, max_depth 6, 30 features
* yardstick.lgb.txt   LightGBM twin: binary, 100 trees, max_depth 6, num_leaves 64, same data
* yardstick.xgb.onnx / yardstick.lgb.onnx  the same two models converted with onnxmltools

Training data: ~20k synthetic rows, fixed seed, single-threaded, so reruns give the same files.
After writing, each model is re-loaded and the ONNX files are checked against the native library
with onnxruntime (the max difference is printed; the ONNX trees compare in float32, so small
differences near thresholds are expected for LightGBM, see FORMATS.md 3.4).

Run with the fixture environment (scripts/fixtures/requirements.txt), e.g.
    .venv-fixtures/bin/python bench/make_bench_models.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "models"
N_ROWS, N_FEATURES, SEED = 20_000, 30, 42


def make_data():
    rng = np.random.RandomState(SEED)
    X = rng.normal(size=(N_ROWS, N_FEATURES))
    X[:, 5] = np.where(rng.rand(N_ROWS) < 0.3, 0.0, X[:, 5])     # sparse-ish column
    X[:, 7] = rng.randint(0, 20, N_ROWS)                          # integer-valued column
    X[:, 9] = np.exp(X[:, 9]) * 50                                # skewed, large magnitude
    w = rng.normal(size=N_FEATURES) * (rng.rand(N_FEATURES) < 0.6)
    s = (X @ w * 0.3 + np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * (X[:, 5] > 0)
         + 0.2 * np.log(X[:, 9] / 50 + 1e-9).clip(-3, 3) + 0.1 * (X[:, 7] - 10))
    s -= np.median(s)                                             # roughly balanced classes
    y = (s + rng.normal(size=N_ROWS) > 0).astype(np.float64)
    X[rng.rand(*X.shape) < 0.02] = np.nan                         # some missing values
    return X, y


def main() -> None:
    import lightgbm as lgb
    import onnxmltools
    import onnxruntime as ort
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    OUT.mkdir(parents=True, exist_ok=True)
    X, y = make_data()
    Xcheck = X[:2000]

    # XGBoost. The sklearn wrapper is used because onnxmltools converts XGBClassifier; its
    # booster is saved as plain JSON (no feature names, so ONNX feature ids are f0..f29).
    xclf = xgb.XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.1,
                             objective="binary:logistic", tree_method="hist", n_jobs=1,
                             random_state=SEED)
    xclf.fit(X, y)
    xgb_path = OUT / "yardstick.xgb.json"
    xclf.get_booster().save_model(str(xgb_path))
    xb = xgb.Booster(model_file=str(xgb_path))
    p_xgb = xb.predict(xgb.DMatrix(Xcheck, missing=np.nan))

    # LightGBM twin on the same data.
    lclf = lgb.LGBMClassifier(n_estimators=100, max_depth=6, num_leaves=64, learning_rate=0.1,
                              n_jobs=1, random_state=SEED, deterministic=True,
                              force_row_wise=True, verbose=-1)
    lclf.fit(X, y)
    lgb_path = OUT / "yardstick.lgb.txt"
    lclf.booster_.save_model(str(lgb_path))
    lb = lgb.Booster(model_file=str(lgb_path))
    p_lgb = lb.predict(Xcheck)

    # ONNX conversions (zipmap off: plain [N, 2] probability tensor).
    types = [("input", FloatTensorType([None, N_FEATURES]))]
    x_onnx = onnxmltools.convert_xgboost(xclf, name="yardstick_xgb", initial_types=types)
    (OUT / "yardstick.xgb.onnx").write_bytes(x_onnx.SerializeToString())
    l_onnx = onnxmltools.convert_lightgbm(lclf, name="yardstick_lgb", initial_types=types,
                                          zipmap=False)
    (OUT / "yardstick.lgb.onnx").write_bytes(l_onnx.SerializeToString())

    def onnx_proba(path):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3   # lgb converter declares label shape [1]: harmless warning
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        outs = sess.run(None, {"input": Xcheck.astype(np.float32)})
        proba = next(o for o in outs if getattr(o, "ndim", 0) == 2)
        return proba[:, 1]

    for name, p_native in [("xgb", p_xgb), ("lgb", p_lgb)]:
        d = np.abs(onnx_proba(OUT / f"yardstick.{name}.onnx") - p_native)
        print(f"yardstick.{name}: ONNX vs native on {len(Xcheck)} rows: max |diff| {d.max():.3g}, "
              f"rows > 1e-5: {(d > 1e-5).sum()}")
    print(f"trees: xgb {xb.num_boosted_rounds()}, lgb {lb.num_trees()}")
    for f in sorted(OUT.iterdir()):
        print(f"  {f.relative_to(OUT.parent.parent)}  {f.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
