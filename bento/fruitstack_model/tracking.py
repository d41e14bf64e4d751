"""Recording one training as an MLflow run and registering its model as a new version.

The run holds the parameters (dataset, seed, holdout, every hyperparameter), the holdout metrics
(overall and per class), the confusion matrix as a figure, the sha256 fingerprint of the training
data, and the model: MLflow's scikit-learn flavour with signature and input example, plus the
project's info file (what the service answers /model with). The registered version is tagged with
the sha256 of the model's model.pkl, taken from the bytes the server stored.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sklearn.pipeline import Pipeline

from fruitstack_model.model_store import sha256_hex
from fruitstack_model.registry import ARTIFACT_FILE, INFO_FILE, SHA256_TAG, Registry

EXPERIMENT = "fruitstack"
LOGGED_MODEL_NAME = "model"


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    run_id: str
    sha256: str
    artifact: bytes  # the model.pkl bytes as the registry holds them


def pip_requirements() -> list[str]:
    """The model's runtime, pinned from this environment: MLflow otherwise spends ~17 s inferring it."""
    return [f"{name}=={importlib_metadata.version(name)}" for name in ("scikit-learn", "numpy", "joblib")]


def confusion_figure(matrix: list[list[int]], classes: list[str], title: str) -> bytes:
    """The confusion matrix as a PNG (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")  # no display in servers and CI
    import matplotlib.pyplot as plt

    values = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.2 * len(classes) + 1.5), dpi=100)
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    peak = values.max() if values.size else 0
    for (i, j), n in np.ndenumerate(values):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > peak / 2 else "black")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def log_and_register(
    registry: Registry,
    *,
    pipeline: Pipeline,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    info: Mapping[str, Any],
    input_example: Mapping[str, list[float]],
    experiment: str = EXPERIMENT,
) -> RegisteredVersion:
    """One MLflow run for this training; its model registered as a new version of registry.name."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    feature_names = [f["name"] for f in info["features"]]
    classes = list(info["classes"])
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)  # MLflow 3 would default it to a local SQLite file
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"{info['dataset']}-seed{info['seed']}") as run:
        mlflow.log_params(dict(params))
        mlflow.log_metrics(dict(metrics))
        mlflow.set_tags({"dataset": info["dataset"], "data_sha256": info["data_sha256"]})
        with tempfile.TemporaryDirectory(prefix="fruitstack-run-") as tmp:
            figure = Path(tmp) / "confusion_matrix.png"
            figure.write_bytes(
                confusion_figure(info["confusion_matrix"], classes, f"{info['dataset']}, holdout rows")
            )
            mlflow.log_artifact(str(figure))
            signature = ModelSignature(
                inputs=Schema([ColSpec("double", name) for name in feature_names]),
                outputs=Schema([TensorSpec(np.dtype(np.float64), (-1, len(classes)), "probabilities")]),
            )
            with warnings.catch_warnings():
                # MLflow checks the input example by predicting on it as a named table; the pipeline
                # was fitted on a bare array, which makes scikit-learn warn about feature names.
                warnings.filterwarnings("ignore", message="X has feature names", category=UserWarning)
                logged = mlflow.sklearn.log_model(
                    pipeline,
                    name=LOGGED_MODEL_NAME,
                    signature=signature,
                    input_example=dict(input_example),
                    pip_requirements=pip_requirements(),
                    # MLflow's default is skops, which refuses most estimators unless each type is
                    # trusted by name. Pickle is safe here because nothing unpickles it unverified:
                    # the sha256 recorded on the version is checked first (load_verified).
                    serialization_format="pickle",
                )
            info_file = Path(tmp) / INFO_FILE
            info_file.write_bytes(orjson.dumps(dict(info)))
            # Inside the logged model, so the version's one download URI has everything the
            # service needs, the reference summary of the training data (drift) included.
            registry.client().log_model_artifact(logged.model_id, str(info_file))
            # Hash what the server stored, not what we meant to send.
            stored = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{logged.artifact_path}/{ARTIFACT_FILE}", dst_path=tmp
                )
            ).read_bytes()
        sha256 = sha256_hex(stored)
        version = mlflow.register_model(logged.model_uri, registry.name, tags={SHA256_TAG: sha256})
    return RegisteredVersion(
        version=str(version.version), run_id=run.info.run_id, sha256=sha256, artifact=stored
    )
