"""Predictions: the backend's client of the model service (schema, validation, coalescing, bulk)."""

from __future__ import annotations

from backend.prediction.model_client import ModelClient
from backend.prediction.predictor import BulkPrediction, ModelUpdate, Prediction, Predictor
from backend.prediction.schema import FeatureInfo, ModelInfo

__all__ = [
    "BulkPrediction",
    "FeatureInfo",
    "ModelClient",
    "ModelInfo",
    "ModelUpdate",
    "Prediction",
    "Predictor",
]
