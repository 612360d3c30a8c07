#!/usr/bin/python3
"""The seed's own stack for bench/predict_vs_fastapi: a FastAPI + uvicorn + XGBoost
prediction API (Debian's python3-fastapi, python3-uvicorn, python3-xgboost) serving the
same model, schema and response as infera's POST /api/v1/predict/{model}: features
validated against the schema, the prediction, a split-conformal interval and the SHAP
contributions of that prediction.

    MODEL=regressor.json SCHEMA=regressor.schema.json \
        /usr/bin/python3 -m uvicorn predict_fastapi_app:app --port 8000 --workers 2
(run from bench/, or with --app-dir bench)
"""
import json
import math
import os
import time

import numpy as np
import xgboost as xgb
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

MODEL_PATH = os.environ["MODEL"]
SCHEMA_PATH = os.environ["SCHEMA"]
MODEL_NAME = os.environ.get("MODEL_NAME", "hardness")

booster = xgb.Booster()
booster.load_model(MODEL_PATH)
booster.set_param({"nthread": 1})
with open(SCHEMA_PATH) as f:
    schema = json.load(f)
features = schema["features"]
names = [f["name"] for f in features]
uncertainty = schema.get("uncertainty", {"method": "none"})
coverage = uncertainty.get("coverage", 0.9)
residuals = np.sort(np.abs(np.array(uncertainty.get("residuals", [0.0]))))
rank = math.ceil((len(residuals) + 1) * coverage)
half_width = float(residuals[min(rank, len(residuals)) - 1])

app = FastAPI()


class PredictRequest(BaseModel):
    features: dict
    explain: bool = True


def row_from(features_in):
    row = np.empty((1, len(features)), dtype=np.float32)
    for i, f in enumerate(features):
        if f["name"] not in features_in:
            raise HTTPException(status_code=400, detail=f"feature '{f['name']}' is missing")
        v = features_in[f["name"]]
        if isinstance(v, bool):
            v = 1.0 if v else 0.0
        if not isinstance(v, (int, float)):
            raise HTTPException(status_code=400, detail=f"feature '{f['name']}' must be a number")
        if ("min" in f and v < f["min"]) or ("max" in f and v > f["max"]):
            raise HTTPException(status_code=400, detail=f"feature '{f['name']}' is out of range")
        row[0, i] = v
    for k in features_in:
        if k not in names:
            raise HTTPException(status_code=400, detail=f"feature '{k}' is not known")
    return row


@app.post("/api/v1/predict/{model}")
def predict(model: str, request: PredictRequest):
    start = time.perf_counter()
    if model != MODEL_NAME:
        raise HTTPException(status_code=404, detail=f"model '{model}' is not known")
    row = row_from(request.features)
    prediction = float(booster.inplace_predict(row)[0])
    out = {"prediction": prediction,
           "uncertainty": {"method": "conformal", "coverage": coverage,
                           "lower": prediction - half_width, "upper": prediction + half_width}}
    if request.explain:
        contribs = booster.predict(xgb.DMatrix(row, feature_names=names), pred_contribs=True)[0]
        out["feature_importance"] = {n: float(c) for n, c in zip(names, contribs[:-1])}
        out["feature_importance_bias"] = float(contribs[-1])
    out["model"] = model
    out["latency_ms"] = (time.perf_counter() - start) * 1000
    out["cached"] = False
    return out
