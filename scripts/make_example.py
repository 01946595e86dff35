#!/usr/bin/env python3
"""Write the bundled example: an XGBoost classifier of the Wisconsin breast-cancer table.

Data: scikit-learn's `load_breast_cancer` (the UCI Wisconsin Diagnostic Breast Cancer data set,
569 rows, 30 features; target 1 = benign), shipped inside scikit-learn, so nothing is fetched.
Writes examples/breast-cancer/model.json (trained on a fixed 80% split, with feature names) and
patients.csv (the first 12 held-out rows, with their `diagnosis` column kept: `wharf predict`
matches columns by name and ignores the extra one). Run with the fixture environment:
    .venv-fixtures/bin/python scripts/make_example.py
"""
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

OUT = Path(__file__).resolve().parent.parent / "examples" / "breast-cancer"


def main() -> None:
    data = load_breast_cancer()
    names = [name.replace(" ", "_") for name in data.feature_names]
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, random_state=7, stratify=data.target)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.2, "nthread": 1, "seed": 7},
        xgb.DMatrix(X_train, label=y_train, feature_names=names), num_boost_round=40)
    OUT.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(OUT / "model.json"))
    rows = X_test[:12]
    with open(OUT / "patients.csv", "w") as handle:
        handle.write(",".join(names + ["diagnosis"]) + "\n")
        for row, label in zip(rows, y_test[:12]):
            handle.write(",".join(repr(float(v)) for v in row) + f",{int(label)}\n")
    predictions = booster.predict(xgb.DMatrix(rows, feature_names=names))
    with open(OUT / "expected.csv", "w") as handle:
        handle.write("probability\n" + "".join(f"{float(p)!r}\n" for p in predictions))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
