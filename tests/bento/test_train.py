"""Training: holdout metrics, the metadata the service and UI rely on, determinism, hyperparameters;
then the real train.py against a real MLflow server: the run, the registered version, the gate."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import mlflow.artifacts
import numpy as np
import pytest
from fruitstack_model.datasets import load_dataset
from fruitstack_model.exceptions import InvalidInput
from fruitstack_model.model_store import METADATA_KEYS
from train import SAMPLE_ROWS, TrainingResult, parse_params, train

from scripts.processes import MlflowServer
from tests.fixtures.mlflow import unique_model_name
from tests.fixtures.model_service import RegistryTemplate, champion_version, train_model


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
    # Per class too, for the run: precision, recall and F1 of each.
    for cls in ("setosa", "versicolor", "virginica"):
        assert {f"precision.{cls}", f"recall.{cls}", f"f1.{cls}"} <= set(iris.metrics)
    assert iris.metrics["f1_macro"] == pytest.approx(
        np.mean([iris.metrics[f"f1.{c}"] for c in iris.metadata["classes"]])
    )


def test_metadata_describes_features_classes_and_a_sample(iris: TrainingResult) -> None:
    meta = iris.metadata
    assert set(METADATA_KEYS) <= set(meta)
    names = [f["name"] for f in meta["features"]]
    assert names == ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
    for feature in meta["features"]:
        assert feature["min"] <= feature["mean"] <= feature["max"]
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["dataset"] == "iris"
    assert datetime.fromisoformat(meta["trained_at"]).tzinfo is not None
    assert set(meta["library_versions"]) == {
        "scikit-learn",
        "numpy",
        "joblib",
        "bentoml",
        "mlflow-skinny",
        "datasketches",
    }
    sample = meta["training_sample"]
    assert list(sample["columns"]) == names
    rows = len(sample["labels"])
    assert 0 < rows <= SAMPLE_ROWS
    assert all(len(column) == rows for column in sample["columns"].values())
    assert set(sample["labels"]) <= set(meta["classes"])


def test_same_seed_gives_the_same_predictions_and_fingerprint(iris: TrainingResult) -> None:
    dataset = load_dataset("iris")
    again = train(dataset, seed=42, holdout=0.25, progress=False)
    other = train(dataset, seed=7, holdout=0.25, progress=False)
    same = iris.pipeline.predict_proba(dataset.features)
    np.testing.assert_array_equal(again.pipeline.predict_proba(dataset.features), same)
    assert again.metadata["training_sample"] == iris.metadata["training_sample"]
    assert again.metadata["data_sha256"] == iris.metadata["data_sha256"]
    # Not vacuous: another seed splits differently, so other training rows and another model.
    assert not np.array_equal(other.pipeline.predict_proba(dataset.features), same)
    assert other.metadata["data_sha256"] != iris.metadata["data_sha256"]


def test_hyperparameters_from_the_command_line_reach_the_classifier_and_the_run() -> None:
    params = parse_params(["C=0.5", "class_weight=balanced", "fit_intercept=false", "max_iter=200"])
    assert params == {"C": 0.5, "class_weight": "balanced", "fit_intercept": False, "max_iter": 200}
    result = train(load_dataset("iris"), seed=1, holdout=0.25, params=params, progress=False)
    classifier = result.pipeline.named_steps["classify"]
    assert (classifier.C, classifier.class_weight, classifier.fit_intercept) == (0.5, "balanced", False)
    assert result.params["model.C"] == 0.5
    assert result.params["model.max_iter"] == 200
    # Every hyperparameter is recorded, not only those given.
    assert {"model.tol", "model.solver", "model.random_state"} <= set(result.params)
    assert {"dataset", "seed", "holdout"} <= set(result.params)


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("C", "NAME=VALUE"),
        ("=3", "NAME=VALUE"),
        ("D=3", "unknown hyperparameter 'D'"),
        ("random_state=1", "unknown"),
    ],
)
def test_bad_params_are_refused_with_what_is_allowed(pair: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_params([pair])


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


# ---- the real train.py against a real MLflow server ----


def test_training_records_a_run_and_registers_a_verified_version(
    registry_template: RegistryTemplate, tmp_path: Path
) -> None:
    """The session template is such a training: iris, seed 42, the first version, champion."""
    server = registry_template.mlflow
    client = server.client()
    version = client.get_model_version(registry_template.registered_model, registry_template.version)
    assert champion_version(server, registry_template.registered_model) == registry_template.version
    artifact = registry_template.artifact.read_bytes()
    assert version.tags["artifact_sha256"] == hashlib.sha256(artifact).hexdigest()
    assert version.tags["gate.decision"] == "champion"
    assert "first version" in version.tags["gate.reason"]

    assert version.run_id is not None
    run = client.get_run(version.run_id)
    params = run.data.params
    assert (params["dataset"], params["seed"], params["holdout"]) == ("iris", "42", "0.25")
    assert params["model.C"] == "1.0"
    assert params["model.max_iter"] == "1000"
    metrics = run.data.metrics
    assert metrics["accuracy"] >= 0.9
    assert {"f1_macro", "f1.setosa", "precision.virginica", "recall.versicolor"} <= set(metrics)
    assert len(run.data.tags["data_sha256"]) == 64
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert "confusion_matrix.png" in files
    figure = Path(client.download_artifacts(run.info.run_id, "confusion_matrix.png", str(tmp_path)))
    assert figure.read_bytes().startswith(b"\x89PNG")

    # The logged model: scikit-learn flavour, signature with the named features, input example.
    root = client.get_model_version_download_uri(registry_template.registered_model, version.version)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=root, dst_path=str(tmp_path / "model"), tracking_uri=server.url
        )
    )
    mlmodel = (local / "MLmodel").read_text()
    assert "sklearn:" in mlmodel
    assert "sepal_length_cm" in mlmodel  # the signature
    assert (local / "input_example.json").exists()
    assert (local / "model.pkl").read_bytes() == artifact
    info = json.loads((local / "fruitstack.json").read_text())
    assert info["data_sha256"] == run.data.tags["data_sha256"]
    assert info["classes"] == ["setosa", "versicolor", "virginica"]


def test_a_weak_candidate_stays_challenger_and_says_why_and_a_forced_one_is_promoted(
    registry_template: RegistryTemplate,
) -> None:
    mlflow: MlflowServer = registry_template.mlflow
    name = unique_model_name()
    first = registry_template.copy_to(name)

    weak = train_model(mlflow, name, params=["C=0.0001"])
    assert "gate: challenger: not promoted: f1_macro" in weak.output
    assert f"< champion v{first}" in weak.output
    assert champion_version(mlflow, name) == first  # the champion stays
    tags = mlflow.client().get_model_version(name, weak.version).tags
    assert tags["gate.decision"] == "challenger"
    assert float(tags["gate.candidate_score"]) < float(tags["gate.champion_score"])
    assert tags["gate.champion_version"] == first
    assert mlflow.client().get_model_version_by_alias(name, "challenger").version == weak.version

    forced = train_model(mlflow, name, params=["C=0.0001"], extra_args=["--promote"])
    assert "gate: manual: forced with --promote; the gate would fail" in forced.output
    assert champion_version(mlflow, name) == forced.version
    assert mlflow.client().get_model_version(name, forced.version).tags["gate.decision"] == "manual"

    # A better one than the (weak) champion passes the gate by itself; both scores are recorded.
    better = train_model(mlflow, name, seed=7)
    assert "gate: champion: promoted: f1_macro" in better.output
    assert champion_version(mlflow, name) == better.version
    tags = mlflow.client().get_model_version(name, better.version).tags
    assert float(tags["gate.candidate_score"]) >= float(tags["gate.champion_score"])


def test_another_dataset_is_not_promoted_over_the_champion_without_force(
    registry_template: RegistryTemplate,
) -> None:
    mlflow = registry_template.mlflow
    name = unique_model_name()
    first = registry_template.copy_to(name)
    wine = train_model(mlflow, name, dataset="wine")
    assert "other features" in wine.output
    assert champion_version(mlflow, name) == first


def test_if_no_champion_trains_only_into_an_empty_registry(registry_template: RegistryTemplate) -> None:
    mlflow = registry_template.mlflow
    name = unique_model_name()
    first = train_model(mlflow, name, extra_args=["--if-no-champion"])
    assert champion_version(mlflow, name) == first.version
    again = train_model(mlflow, name, extra_args=["--if-no-champion"])
    assert "has a champion already" in again.output
    assert again.version == first.version
