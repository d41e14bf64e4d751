"""Shapes of the service's JSON answers, declared for BentoML's OpenAPI page (/docs.json).

The APIs return pre-serialised responses for speed, so these models document; they do not convert.
"""

from __future__ import annotations

from pydantic import BaseModel, RootModel


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]
    model_version: str


class RowPredictions(BaseModel):
    model_version: str
    classes: list[str]
    labels: list[str]
    probabilities: list[list[float]]


class FeatureInfo(BaseModel):
    name: str
    min: float
    max: float
    mean: float


class Metrics(BaseModel):
    accuracy: float
    f1_macro: float


class TrainingSample(BaseModel):
    columns: dict[str, list[float]]
    labels: list[str]


class ModelInfo(BaseModel):
    name: str
    version: str
    dataset: str
    features: list[FeatureInfo]
    classes: list[str]
    metrics: Metrics
    confusion_matrix: list[list[int]]
    trained_at: str
    training_sample: TrainingSample
    library_versions: dict[str, str]
    sha256: str


class Reload(BaseModel):
    previous_version: str
    current_version: str


class NpyProbabilities(RootModel[bytes]):
    """The bytes of an .npy float64 array (n_rows, n_classes), in the model's class order."""
