"""Loading model artifacts hash-checked, and the local BentoML store as a cache of registry versions.

An artifact is the pickle MLflow wrote for a version (model.pkl). It is unpickled only after its
sha256 matched the one recorded on the version at registration: a pickle runs code when loaded, so
bytes that changed anywhere between training and serving are refused before they can.

The BentoML store keeps each version the service loaded (`<registered model>:<version>`), so a
restart while the registry is unreachable can still serve the last champion. It is a cache: the
registry's tag decides which sha256 is right whenever the registry answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bentoml
import filelock
import numpy as np
import numpy.typing as npt
import orjson
from bentoml.exceptions import NotFound
from sklearn.pipeline import Pipeline

from fruitstack_model.exceptions import InvalidInput, ModelIntegrityError
from fruitstack_model.registry import ARTIFACT_FILE, INFO_FILE, FetchedModel, VersionRecord
from fruitstack_model.scoring import Scorer, compile_scorer

logger = logging.getLogger("bentoml").getChild(__name__)

RECORD_FILE = "record.json"

# What train.py writes into each version's info file; the service refuses a version lacking any.
METADATA_KEYS = (
    "dataset",
    "features",
    "classes",
    "metrics",
    "confusion_matrix",
    "trained_at",
    "training_sample",
    "library_versions",
)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class LoadedModel:
    """One verified, unpickled model version and the facts the API answers with."""

    name: str
    version: str
    run_id: str | None
    sha256: str
    pipeline: Pipeline
    metadata: dict[str, Any]
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
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

    def info(self) -> dict[str, Any]:
        """The /model answer's facts about this version (the caller adds aliases and registry state)."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            **{key: self.metadata[key] for key in METADATA_KEYS},
            # Versions trained before drift monitoring have none; the backend then says so.
            "reference": self.metadata.get("reference"),
            "sha256": self.sha256,
        }


def load_verified(
    *,
    name: str,
    version: str,
    run_id: str | None,
    artifact: bytes,
    metadata: dict[str, Any],
    sha256: str | None,
) -> LoadedModel:
    """Check artifact's sha256 against the recorded one, and only then unpickle it.

    The bytes are hashed and unpickled from memory, so nothing can change between check and load.
    """
    where = f"version {version} of '{name}'"
    if not sha256:
        raise ModelIntegrityError(f"refusing to load {where}: no sha256 was recorded at registration")
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ModelIntegrityError(f"{where} has no {', '.join(missing)} in its info file")
    actual = sha256_hex(artifact)
    if actual != sha256:
        raise ModelIntegrityError(
            f"refusing to load {where}: {ARTIFACT_FILE} has sha256 {actual}, "
            f"but {sha256} was recorded at registration"
        )
    try:
        # Safe only because the bytes are the ones registered (checked just above); MLflow wrote
        # them with pickle (serialization_format="pickle" in train.py).
        pipeline = pickle.loads(artifact)
    except Exception as exc:  # e.g. pickled by an incompatible scikit-learn: report, do not crash
        raise ModelIntegrityError(f"{where}: {ARTIFACT_FILE} cannot be unpickled ({exc!r})") from exc
    feature_names = tuple(str(f["name"]) for f in metadata["features"])
    classes = tuple(str(c) for c in metadata["classes"])
    # A pickle that does not match its own metadata would answer with the wrong labels.
    if (
        not isinstance(pipeline, Pipeline)
        or tuple(str(c) for c in pipeline.classes_) != classes
        or pipeline.n_features_in_ != len(feature_names)
    ):
        raise ModelIntegrityError(f"{where}: the pipeline does not match its info file")
    sample = metadata["training_sample"]["columns"]
    probe = np.asarray([sample[n] for n in feature_names], dtype=np.float64).T
    return LoadedModel(
        name=name,
        version=version,
        run_id=run_id,
        sha256=sha256,
        pipeline=pipeline,
        metadata=metadata,
        feature_names=feature_names,
        classes=classes,
        class_array=np.asarray(classes, dtype=np.str_),
        scorer=compile_scorer(pipeline, probe),
    )


def load_fetched(fetched: FetchedModel) -> LoadedModel:
    """A version downloaded from the registry, verified against the sha256 tag of its record."""
    record = fetched.record
    return load_verified(
        name=record.name,
        version=record.version,
        run_id=record.run_id,
        artifact=fetched.artifact,
        metadata=fetched.info,
        sha256=record.sha256,
    )


class ModelCache:
    """Registry versions kept in the BentoML model store (tag `<registered model>:<version>`).

    Each entry holds the version's files as downloaded plus `record.json` (run id, created, tags as
    registered, so the sha256 recorded at registration too). Files rather than BentoML metadata:
    that refuses None values, which hyperparameters have.

    Processes that share the store (the service's workers) pass one `lock_dir`, where they take
    turns writing; without one, writes are not coordinated (a single process).
    """

    def __init__(self, lock_dir: Path | None = None) -> None:
        self._lock_dir = lock_dir

    def get(self, name: str, version: str) -> FetchedModel | None:
        try:
            stored = bentoml.models.get(f"{name}:{version}")
        except NotFound:
            return None
        folder = Path(stored.path)
        try:
            record = orjson.loads((folder / RECORD_FILE).read_bytes())
            info = orjson.loads((folder / INFO_FILE).read_bytes())
            artifact = (folder / ARTIFACT_FILE).read_bytes()
        except (OSError, orjson.JSONDecodeError):
            logger.warning("cached %s:%s is incomplete; ignoring it", name, version)
            return None
        return FetchedModel(
            record=VersionRecord(
                name=name,
                version=version,
                run_id=record.get("run_id"),
                aliases=(),
                created_at=str(record.get("created_at", "")),
                tags=dict(record.get("tags", {})),
            ),
            artifact=artifact,
            info=info,
        )

    def put(self, fetched: FetchedModel) -> None:
        """Keep a verified download; a version already cached is left as it is.

        Every worker of the service shares one store and polls on the same schedule, so several
        of them download a new champion in the same second: a lock file makes them take turns
        (without it BentoML refuses all but the first with "already exists", and a worker could
        delete an entry another was still writing as incomplete).
        """
        record = fetched.record
        with self._lock(record.name):
            if self.get(record.name, record.version) is not None:
                return
            self.drop(record.name, record.version)  # an incomplete entry
            with bentoml.models.create(f"{record.name}:{record.version}") as model:
                folder = Path(model.path)
                (folder / ARTIFACT_FILE).write_bytes(fetched.artifact)
                (folder / INFO_FILE).write_bytes(orjson.dumps(fetched.info))
                (folder / RECORD_FILE).write_bytes(
                    orjson.dumps(
                        {"run_id": record.run_id, "created_at": record.created_at, "tags": dict(record.tags)}
                    )
                )

    def _lock(self, name: str) -> contextlib.AbstractContextManager[object]:
        if self._lock_dir is None:
            return contextlib.nullcontext()
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(self._lock_dir / f"{name}.cache.lock")

    def drop(self, name: str, version: str) -> None:
        with contextlib.suppress(NotFound):
            bentoml.models.delete(f"{name}:{version}")

    def latest(self, name: str) -> str | None:
        """The version cached last, or None."""
        try:
            return str(bentoml.models.get(f"{name}:latest").tag.version)
        except NotFound:
            return None


def require_version(version: str) -> str:
    """Registry versions are positive integers written as strings ("3")."""
    text = version.strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f'version must be a registry version number such as "3", got {version!r}')
    return str(int(text))
