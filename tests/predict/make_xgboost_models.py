#!/usr/bin/python3
"""Writes the XGBoost test models of the predictor tests and benchmarks into OUTDIR.

Run with Debian's python3-xgboost (scripts/setup installs it):
    /usr/bin/python3 tests/predict/make_xgboost_models.py OUTDIR

A synthetic "material hardness" data set (seeded, so every run writes the same
models) of six named features, and from it:
  regressor.json / regressor.ubj     reg:squarederror, 60 trees; conformal interval
                                     from 1,000 calibration residuals (schema beside it)
  ens0.json .. ens4.json             five bootstrap boosters, ens0 the model, the others
                                     its ensemble members (ens0.schema.json)
  qmain.json, qlo.json, qhi.json     a mean model and 5% / 95% quantile models
                                     (pinball loss as a custom objective)
  classifier.json                    multi:softprob, 3 classes
  binary.json                        binary:logistic
  nonames.json                       a model without feature names and no schema
  reference.json                     20 rows and what XGBoost's Python library predicts
                                     for them (values and SHAP contributions) with every
                                     model, plus 1,000 held-out rows with their targets
"""
import json
import os
import sys

import numpy as np
import xgboost as xgb

FEATURES = [
    {"name": "density", "type": "float", "min": 0.5, "max": 25.0, "unit": "g/cm3"},
    {"name": "melting_point", "type": "float", "min": 300.0, "max": 4000.0, "unit": "K"},
    {"name": "atomic_radius", "type": "float", "min": 0.5, "max": 3.0, "unit": "angstrom"},
    {"name": "electronegativity", "type": "float", "min": 0.7, "max": 4.0},
    {"name": "n_elements", "type": "int", "min": 1, "max": 6},
    {"name": "is_alloy", "type": "bool"},
]
NAMES = [f["name"] for f in FEATURES]


def make_data(rng, n):
    x = np.empty((n, 6), dtype=np.float32)
    x[:, 0] = rng.uniform(0.5, 25.0, n)
    x[:, 1] = rng.uniform(300.0, 4000.0, n)
    x[:, 2] = rng.uniform(0.5, 3.0, n)
    x[:, 3] = rng.uniform(0.7, 4.0, n)
    x[:, 4] = rng.integers(1, 7, n)
    x[:, 5] = rng.integers(0, 2, n)
    y = (0.3 * x[:, 0] + 0.002 * x[:, 1] - 1.5 * x[:, 2] + 0.8 * x[:, 3] * x[:, 5]
         + 0.25 * x[:, 4] + np.sin(x[:, 0] / 3.0)) + rng.normal(0, 0.6, n)
    return x, y.astype(np.float32)


def pinball(alpha):
    def objective(pred, dtrain):
        y = dtrain.get_label()
        grad = np.where(pred > y, 1.0 - alpha, -alpha)
        hess = np.ones_like(pred)
        return grad, hess
    return objective


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261205)
    x_train, y_train = make_data(rng, 3000)
    x_cal, y_cal = make_data(rng, 1000)
    x_test, y_test = make_data(rng, 1000)
    params = {"max_depth": 4, "eta": 0.1, "objective": "reg:squarederror", "nthread": 1,
              "seed": 1}
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=NAMES)
    schema_base = {"features": FEATURES, "target": {"name": "hardness", "unit": "GPa"}}

    # Regressor with a split-conformal interval.
    reg = xgb.train(params, dtrain, num_boost_round=60)
    reg.save_model(os.path.join(out, "regressor.json"))
    reg.save_model(os.path.join(out, "regressor.ubj"))
    residuals = y_cal - reg.predict(xgb.DMatrix(x_cal, feature_names=NAMES))
    schema = dict(schema_base)
    schema["uncertainty"] = {"method": "conformal", "coverage": 0.9,
                             "residuals": [round(float(r), 6) for r in residuals]}
    with open(os.path.join(out, "regressor.schema.json"), "w") as f:
        json.dump(schema, f)

    # Bootstrap ensemble.
    ensemble = []
    for i in range(5):
        idx = rng.integers(0, len(x_train), len(x_train))
        d = xgb.DMatrix(x_train[idx], label=y_train[idx], feature_names=NAMES)
        b = xgb.train(dict(params, seed=i + 1, subsample=0.8), d, num_boost_round=40)
        b.save_model(os.path.join(out, f"ens{i}.json"))
        ensemble.append(b)
    schema = dict(schema_base)
    schema["uncertainty"] = {"method": "ensemble", "coverage": 0.9,
                             "members": [f"ens{i}.json" for i in range(1, 5)]}
    with open(os.path.join(out, "ens0.schema.json"), "w") as f:
        json.dump(schema, f)

    # Quantile models.
    qmain = xgb.train(params, dtrain, num_boost_round=40)
    qmain.save_model(os.path.join(out, "qmain.json"))
    quantiles = {}
    for name, alpha in (("qlo", 0.05), ("qhi", 0.95)):
        q = xgb.train(dict(params, base_score=float(np.quantile(y_train, alpha))), dtrain,
                      num_boost_round=80, obj=pinball(alpha))
        q.save_model(os.path.join(out, f"{name}.json"))
        quantiles[name] = q
    schema = dict(schema_base)
    schema["uncertainty"] = {"method": "quantile",
                             "lower": {"quantile": 0.05, "path": "qlo.json"},
                             "upper": {"quantile": 0.95, "path": "qhi.json"}}
    with open(os.path.join(out, "qmain.schema.json"), "w") as f:
        json.dump(schema, f)

    # Classifiers.
    labels3 = np.digitize(y_train, np.quantile(y_train, [1 / 3, 2 / 3])).astype(np.float32)
    cls = xgb.train(dict(params, objective="multi:softprob", num_class=3),
                    xgb.DMatrix(x_train, label=labels3, feature_names=NAMES), num_boost_round=20)
    cls.save_model(os.path.join(out, "classifier.json"))
    with open(os.path.join(out, "classifier.schema.json"), "w") as f:
        json.dump(dict(schema_base, classes=["soft", "medium", "hard"]), f)
    labels2 = (y_train > np.median(y_train)).astype(np.float32)
    binary = xgb.train(dict(params, objective="binary:logistic"),
                       xgb.DMatrix(x_train, label=labels2, feature_names=NAMES), num_boost_round=20)
    binary.save_model(os.path.join(out, "binary.json"))
    with open(os.path.join(out, "binary.schema.json"), "w") as f:
        json.dump(dict(schema_base, classes=["soft", "hard"]), f)

    # No feature names, no schema.
    nonames = xgb.train(params, xgb.DMatrix(x_train, label=y_train), num_boost_round=10)
    nonames.save_model(os.path.join(out, "nonames.json"))

    rows = x_test[:20]
    d_rows = xgb.DMatrix(rows, feature_names=NAMES)

    def ref(b, dmat):
        return {"predict": b.predict(dmat).astype(float).tolist(),
                "contribs": b.predict(dmat, pred_contribs=True).astype(float).tolist()}

    reference = {
        "features": NAMES,
        "rows": rows.astype(float).tolist(),
        "regressor": ref(reg, d_rows),
        "classifier": ref(cls, d_rows),
        "binary": ref(binary, d_rows),
        "ensemble": [ref(b, d_rows) for b in ensemble],
        "qmain": ref(qmain, d_rows),
        "qlo": ref(quantiles["qlo"], d_rows),
        "qhi": ref(quantiles["qhi"], d_rows),
        "nonames": ref(nonames, xgb.DMatrix(rows)),
        "holdout": {"rows": x_test.astype(float).tolist(), "y": y_test.astype(float).tolist()},
        "xgboost_version": xgb.__version__,
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(reference, f)


if __name__ == "__main__":
    main()
