"""Saving trained pipelines to the BentoML model store and loading them back, hash-checked."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bentoml
import joblib
import numpy as np
import numpy.typing as npt
import orjson
from bentoml.exceptions import NotFound
from sklearn.pipeline import Pipeline

from fruitstack_model.exceptions import ModelIntegrityError, ModelNotFound
from fruitstack_model.scoring import Scorer, compile_scorer

MODEL_NAME = "fruitstack-classifier"
ARTIFACT_FILE = "model.pkl"

# What train.py records; the service refuses models whose metadata lacks any of these.
METADATA_KEYS = (
    "dataset",
    "features",
    "classes",
    "metrics",
    "confusion_matrix",
    "trained_at",
    "training_sample",
    "library_versions",
    "sha256",
)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dump_pipeline(pipeline: Pipeline) -> bytes:
    """The joblib artifact as bytes, so the same bytes are hashed, stored and written out."""
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    return buffer.getvalue()


def save_to_store(*, artifact: bytes, metadata: dict[str, Any]) -> str:
    """Register artifact as a new version of MODEL_NAME with metadata plus its sha256; returns the tag."""
    with bentoml.models.create(MODEL_NAME, metadata={**metadata, "sha256": sha256_hex(artifact)}) as model:
        Path(model.path_of(ARTIFACT_FILE)).write_bytes(artifact)
    return str(model.tag)


def latest_stored() -> bentoml.Model:
    """The newest registered version (BentoML's `latest` pointer), not loaded yet."""
    return stored_version("latest")


def stored_version(version: str) -> bentoml.Model:
    try:
        return bentoml.models.get(f"{MODEL_NAME}:{version}")
    except NotFound:
        raise ModelNotFound(
            f"no model '{MODEL_NAME}:{version}' in the BentoML store; run `nox -s train` first"
        ) from None


@dataclass(frozen=True)
class LoadedModel:
    """One verified, unpickled model version and the facts the API answers with."""

    version: str
    pipeline: Pipeline
    metadata: dict[str, Any]
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    # The /model answer never changes for a version, so it is serialised once at load time.
    info_json: bytes = field(repr=False)
    class_array: npt.NDArray[np.str_] = field(repr=False)
    scorer: Scorer = field(repr=False)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict_proba(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Probabilities (n_rows, n_classes) in `classes` order; rows are validated already."""
        return self.scorer(rows)

    def labels(self, probabilities: npt.NDArray[np.float64]) -> list[str]:
        labels: list[str] = self.class_array[probabilities.argmax(axis=1)].tolist()
        return labels


def load_verified(stored: bentoml.Model) -> LoadedModel:
    """Read the artifact, check its sha256 against the metadata, and only then unpickle it.

    The bytes are read once and unpickled from memory, so the file cannot change between the check
    and the load.
    """
    metadata: dict[str, Any] = dict(stored.info.metadata)
    version = str(stored.tag.version)
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ModelIntegrityError(f"model {stored.tag} has no {', '.join(missing)} in its metadata")
    data = Path(stored.path_of(ARTIFACT_FILE)).read_bytes()
    actual = sha256_hex(data)
    if actual != metadata["sha256"]:
        raise ModelIntegrityError(
            f"refusing to load model {stored.tag}: {ARTIFACT_FILE} has sha256 {actual}, "
            f"but its metadata records {metadata['sha256']}"
        )
    try:
        pipeline = joblib.load(io.BytesIO(data))
    except Exception as exc:  # e.g. pickled by an incompatible scikit-learn: report, do not crash
        message = f"model {stored.tag}: {ARTIFACT_FILE} cannot be unpickled ({exc!r})"
        raise ModelIntegrityError(message) from exc
    feature_names = tuple(str(f["name"]) for f in metadata["features"])
    classes = tuple(str(c) for c in metadata["classes"])
    # A pickle that does not match its own metadata would answer with the wrong labels.
    if tuple(str(c) for c in pipeline.classes_) != classes or pipeline.n_features_in_ != len(feature_names):
        raise ModelIntegrityError(f"model {stored.tag}: the pipeline does not match its metadata")
    sample = metadata["training_sample"]["columns"]
    probe = np.asarray([sample[name] for name in feature_names], dtype=np.float64).T
    info = {"name": MODEL_NAME, "version": version, **{key: metadata[key] for key in METADATA_KEYS}}
    return LoadedModel(
        version=version,
        pipeline=pipeline,
        metadata=metadata,
        feature_names=feature_names,
        classes=classes,
        info_json=orjson.dumps(info),
        class_array=np.asarray(classes, dtype=np.str_),
        scorer=compile_scorer(pipeline, probe),
    )
