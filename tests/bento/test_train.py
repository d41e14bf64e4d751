"""Training: holdout metrics, the metadata the service and UI rely on, determinism, a second dataset."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from fruitstack_model.datasets import load_dataset
from fruitstack_model.model_store import METADATA_KEYS
from train import SAMPLE_ROWS, TrainingResult, train


@pytest.fixture(scope="module")
def iris() -> TrainingResult:
    return train(load_dataset("iris"), seed=42, holdout=0.25, progress=False)


def test_iris_holdout_metrics_clear_the_floor(iris: TrainingResult) -> None:
    metrics = iris.metadata["metrics"]
    assert metrics["accuracy"] >= 0.9
    assert metrics["f1_macro"] >= 0.9
    matrix = np.asarray(iris.metadata["confusion_matrix"])
    assert matrix.shape == (3, 3)
    assert matrix.sum() == iris.metadata["n_holdout"] == 38  # stratified 25% of 150
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["accuracy"])


def test_metadata_describes_features_classes_and_a_sample(iris: TrainingResult) -> None:
    meta = iris.metadata
    assert set(METADATA_KEYS) - {"sha256"} <= set(meta)  # the store adds sha256
    names = [f["name"] for f in meta["features"]]
    assert names == ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    for feature in meta["features"]:
        assert feature["min"] <= feature["mean"] <= feature["max"]
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["dataset"] == "iris"
    assert datetime.fromisoformat(meta["trained_at"]).tzinfo is not None
    assert set(meta["library_versions"]) == {"scikit-learn", "numpy", "joblib", "bentoml"}
    sample = meta["training_sample"]
    assert list(sample["columns"]) == names
    rows = len(sample["labels"])
    assert 0 < rows <= SAMPLE_ROWS
    assert all(len(column) == rows for column in sample["columns"].values())
    assert set(sample["labels"]) <= set(meta["classes"])


def test_same_seed_gives_the_same_predictions(iris: TrainingResult) -> None:
    dataset = load_dataset("iris")
    again = train(dataset, seed=42, holdout=0.25, progress=False)
    other = train(dataset, seed=7, holdout=0.25, progress=False)
    same = iris.pipeline.predict_proba(dataset.features)
    np.testing.assert_array_equal(again.pipeline.predict_proba(dataset.features), same)
    assert again.metadata["training_sample"] == iris.metadata["training_sample"]
    # Not vacuous: another seed splits differently and so learns a (slightly) different model.
    assert not np.array_equal(other.pipeline.predict_proba(dataset.features), same)


def test_wine_trains_with_its_own_thirteen_features() -> None:
    result = train(load_dataset("wine"), seed=42, holdout=0.25, progress=False)
    meta = result.metadata
    assert len(meta["features"]) == 13
    assert "od280_od315_of_diluted_wines" in [f["name"] for f in meta["features"]]
    assert meta["classes"] == ["class_0", "class_1", "class_2"]
    assert meta["metrics"]["accuracy"] >= 0.9
    assert len(meta["training_sample"]["columns"]) == 13


def test_unknown_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="iris, wine"):
        load_dataset("mnist")
