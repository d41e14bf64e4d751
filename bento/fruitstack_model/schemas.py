"""Shapes of the service's JSON answers, declared for BentoML's OpenAPI page (/docs.json).

The APIs return pre-serialised responses for speed, so these models document; they do not convert.
They forbid undocumented keys, so tests/bento/test_api_contract.py can hold real answers to them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, RootModel


class Documented(BaseModel):
    """A documented JSON object: exactly these keys."""

    model_config = ConfigDict(extra="forbid")


class Prediction(Documented):
    label: str
    probabilities: dict[str, float]
    model_version: str


class RowError(Documented):
    """A row that cannot be scored (its label is "" and its probabilities [])."""

    row: int
    error: str


class RowPredictions(Documented):
    model_version: str
    classes: list[str]
    labels: list[str]
    probabilities: list[list[float]]
    errors: list[RowError]


class FeatureInfo(Documented):
    name: str
    min: float
    max: float
    mean: float


class Metrics(Documented):
    accuracy: float
    f1_macro: float


class TrainingSample(Documented):
    columns: dict[str, list[float]]
    labels: list[str]


class ModelInfo(Documented):
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


class Reload(Documented):
    previous_version: str
    current_version: str


class NpyProbabilities(RootModel[bytes]):
    """The bytes of an .npy float64 array (n_rows, n_classes), in the model's class order."""
