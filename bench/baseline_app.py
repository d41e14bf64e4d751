"""The naive baseline for Predict: FastAPI loading the joblib model in-process, answering POST /predict.

Written the way most people would write it (pydantic body, dict answer, one uvicorn worker), so the
benchmark's ratios say what the gRPC + model-service path buys over it.
    MODEL_PATH=bento/model.pkl FEATURES=a,b,c,d uvicorn bench.baseline_app:create_app --factory --port 8000
"""

from __future__ import annotations

import os
from typing import Any

import joblib
import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class PredictBody(BaseModel):
    features: dict[str, float]


def create_app() -> FastAPI:
    model: Any = joblib.load(os.environ.get("MODEL_PATH", "bento/model.pkl"))
    # The artifact is a bare Pipeline fitted on arrays; the benchmark passes the feature order along.
    names = os.environ["FEATURES"].split(",")
    classes: list[str] = [str(c) for c in model.classes_]
    app = FastAPI()

    @app.post("/predict")
    def predict(body: PredictBody) -> dict[str, Any]:
        try:
            row = np.array([[body.features[name] for name in names]])
        except KeyError as exc:
            raise HTTPException(400, f"missing feature {exc}") from None
        probabilities = model.predict_proba(row)[0]
        return {
            "label": classes[int(probabilities.argmax())],
            "probabilities": dict(zip(classes, probabilities.tolist(), strict=True)),
        }

    return app
