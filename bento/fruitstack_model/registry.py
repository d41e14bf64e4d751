"""The MLflow model registry as this project uses it: versions, aliases, tags and artifacts.

One registered model (`fruitstack-classifier` unless configured otherwise) holds every trained
version. Alias `champion` names the version that is served; `challenger` the newest one the gate
did not promote. Each version carries tags written at registration and by the gate:

    artifact_sha256       sha256 of the logged model's model.pkl; checked before every unpickling
    gate.decision         champion | challenger | manual (forced with --promote, or a rollback)
    gate.metric, gate.margin, gate.candidate_score, gate.champion_score, gate.champion_version,
    gate.reason           what the gate compared and why it decided so
    gate.pinned_version   the pinned version that held back a candidate the gate would have promoted

The registered model itself carries the pin, a person's decision that the gate must respect:

    pin.version, pin.by, pin.at, pin.reason
                          a rollback (or an admin's switch) pinned the champion to this version:
                          runs still train, gate and register, but promote nothing until unpinned

`import mlflow` takes seconds, so this module imports it only when a Registry first talks to the
server, never on a request path. Every failure of a call becomes ModelNotFound (the registry
answered that it has no such thing) or RegistryUnavailable (it did not answer, or refused).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fruitstack_model.exceptions import ModelNotFound, RegistryUnavailable

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_TRACKING_URI = "http://localhost:5000"
REGISTERED_MODEL = "fruitstack-classifier"
CHAMPION = "champion"
CHALLENGER = "challenger"
# Files inside each logged model: MLflow's pickle of the pipeline, and what the service answers
# /model with (features, classes, metrics, training sample, ...), written by train.py.
ARTIFACT_FILE = "model.pkl"
INFO_FILE = "fruitstack.json"
SHA256_TAG = "artifact_sha256"
GATE_TAG_PREFIX = "gate."
PIN_TAG_PREFIX = "pin."
_PIN_FIELDS = ("version", "by", "at", "reason")


@dataclass(frozen=True)
class Pin:
    """The champion pinned by a person: which version, by whom, when (ISO 8601, UTC) and why."""

    version: str
    by: str
    at: str
    reason: str

    def tags(self) -> dict[str, str]:
        return {f"{PIN_TAG_PREFIX}{name}": getattr(self, name) for name in _PIN_FIELDS}


@dataclass(frozen=True)
class VersionRecord:
    """One registered version as the registry describes it (no artifact)."""

    name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...]
    created_at: str  # ISO 8601, UTC
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return self.tags.get(SHA256_TAG)

    @property
    def gate(self) -> dict[str, str]:
        """The gate's tags without their prefix: decision, metric, margin, scores, reason."""
        return {
            k.removeprefix(GATE_TAG_PREFIX): v for k, v in self.tags.items() if k.startswith(GATE_TAG_PREFIX)
        }


@dataclass(frozen=True)
class FetchedModel:
    """A version's artifact bytes (not unpickled) and its info file, straight from the registry."""

    record: VersionRecord
    artifact: bytes
    info: dict[str, Any]


def configure_http(*, timeout_s: int, retries: int) -> None:
    """Bound every MLflow HTTP call of this process (MLflow reads these variables per request).

    MLflow's defaults (120 s timeout, 7 retries with exponential backoff) make a call to a stopped
    server take minutes; a service must instead answer "registry unavailable" within seconds.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
    # Progress bars of artifact downloads would land in the service's log on every load.
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


class Registry:
    """The versions of one registered model on one MLflow tracking server."""

    def __init__(self, tracking_uri: str, name: str = REGISTERED_MODEL) -> None:
        self.tracking_uri = tracking_uri
        self.name = name
        self._client: MlflowClient | None = None
        self._client_lock = threading.Lock()
        # A run's metrics never change once training has finished, so each is asked for once.
        self._run_metrics: dict[str, dict[str, float]] = {}

    def client(self) -> MlflowClient:
        with self._client_lock:
            if self._client is None:
                from mlflow import MlflowClient  # slow import: only when the registry is first used

                # The registry URI must be given too: MLflow 3 defaults it to a local SQLite file.
                self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            return self._client

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """Translate MLflow's exceptions: 'no such thing' -> ModelNotFound, anything else -> unavailable."""
        from mlflow.exceptions import MlflowException, RestException

        try:
            yield
        except RestException as exc:
            # The server answered. Missing models/versions are RESOURCE_DOES_NOT_EXIST; a missing
            # alias is INVALID_PARAMETER_VALUE "... alias ... not found".
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in exc.message:
                raise ModelNotFound(f"{what}: {exc.message}") from exc
            raise RegistryUnavailable(
                f"the MLflow registry at {self.tracking_uri} refused {what}: {exc.message}"
            ) from exc
        except (MlflowException, OSError) as exc:
            # No answer: connection refused, timed out, DNS. MLflow wraps requests' errors.
            raise RegistryUnavailable(
                f"the MLflow registry at {self.tracking_uri} is unreachable ({what}): {_short(exc)}"
            ) from exc

    def _record(self, mv: Any) -> VersionRecord:
        return VersionRecord(
            name=str(mv.name),
            version=str(mv.version),
            run_id=mv.run_id or None,
            aliases=tuple(sorted(mv.aliases or ())),
            created_at=_iso(mv.creation_timestamp),
            tags=dict(mv.tags or {}),
        )

    def champion(self) -> VersionRecord | None:
        """The version alias `champion` points at, or None when there is none (no version yet)."""
        try:
            return self.alias(CHAMPION)
        except ModelNotFound:
            return None

    def alias(self, alias: str) -> VersionRecord:
        with self._call(f"looking up alias '{alias}' of '{self.name}'"):
            return self._record(self.client().get_model_version_by_alias(self.name, alias))

    def get(self, version: str) -> VersionRecord:
        with self._call(f"looking up version {version} of '{self.name}'"):
            return self._record(self.client().get_model_version(self.name, version))

    def versions(self) -> list[VersionRecord]:
        """Every version of the registered model, newest first (empty when it does not exist)."""
        with self._call(f"listing the versions of '{self.name}'"):
            found = self.client().search_model_versions(f"name = '{self.name}'")
            if not found:
                return []
            # Search results carry no aliases (MLflow 3.17); the registered model has them all.
            aliases: dict[str, list[str]] = {}
            for alias, version in self.client().get_registered_model(self.name).aliases.items():
                aliases.setdefault(str(version), []).append(str(alias))
        records = [self._record(mv) for mv in found]
        records = [replace(r, aliases=tuple(sorted(aliases.get(r.version, ())))) for r in records]
        return sorted(records, key=lambda r: int(r.version), reverse=True)

    def run_metrics(self, run_id: str) -> dict[str, float]:
        if run_id not in self._run_metrics:
            with self._call(f"reading run {run_id}"):
                metrics = self.client().get_run(run_id).data.metrics
            self._run_metrics[run_id] = {str(k): float(v) for k, v in metrics.items()}
        return self._run_metrics[run_id]

    def set_alias(self, alias: str, version: str) -> None:
        with self._call(f"pointing alias '{alias}' of '{self.name}' at version {version}"):
            self.client().set_registered_model_alias(self.name, alias, version)

    def delete_alias(self, alias: str) -> None:
        with self._call(f"deleting alias '{alias}' of '{self.name}'"):
            self.client().delete_registered_model_alias(self.name, alias)

    def pin(self) -> Pin | None:
        """The pin on the registered model, or None (the gate may promote)."""
        with self._call(f"reading the pin of '{self.name}'"):
            tags = self.client().get_registered_model(self.name).tags or {}
        version = tags.get(f"{PIN_TAG_PREFIX}version")
        if not version:
            return None
        return Pin(**{name: str(tags.get(f"{PIN_TAG_PREFIX}{name}", "")) for name in _PIN_FIELDS})

    def set_pin(self, pin: Pin) -> None:
        with self._call(f"pinning '{self.name}' to version {pin.version}"):
            for key, value in pin.tags().items():
                self.client().set_registered_model_tag(self.name, key, value)

    def clear_pin(self) -> None:
        with self._call(f"unpinning '{self.name}'"):
            # The version tag last: a pin read half-way through a clear still reads as pinned.
            for name in (*_PIN_FIELDS[1:], _PIN_FIELDS[0]):
                self.client().delete_registered_model_tag(self.name, f"{PIN_TAG_PREFIX}{name}")

    def set_tags(self, version: str, tags: Mapping[str, str]) -> None:
        with self._call(f"tagging version {version} of '{self.name}'"):
            for key, value in tags.items():
                self.client().set_model_version_tag(self.name, version, key, value)

    def fetch(self, version: str) -> FetchedModel:
        """Download a version's artifact and info file (the artifact is NOT unpickled here)."""
        record = self.get(version)
        files = self._download(record.version, (ARTIFACT_FILE, INFO_FILE))
        return FetchedModel(record=record, artifact=files[ARTIFACT_FILE], info=orjson.loads(files[INFO_FILE]))

    def fetch_info(self, version: str) -> tuple[VersionRecord, dict[str, Any]]:
        """A version's record and info file (schema, metrics, drift reference) without its artifact."""
        record = self.get(version)
        return record, orjson.loads(self._download(record.version, (INFO_FILE,))[INFO_FILE])

    def _download(self, version: str, names: tuple[str, ...]) -> dict[str, bytes]:
        with self._call(f"downloading version {version} of '{self.name}'"):
            import mlflow.artifacts

            root = self.client().get_model_version_download_uri(self.name, version)
            with tempfile.TemporaryDirectory(prefix="fruitstack-fetch-") as tmp:
                files = {}
                for name in names:
                    path = mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{root}/{name}", dst_path=tmp, tracking_uri=self.tracking_uri
                    )
                    files[name] = Path(path).read_bytes()
        return files


def _iso(milliseconds: int | None) -> str:
    if not milliseconds:
        return ""
    return (
        datetime.fromtimestamp(milliseconds / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _short(exc: BaseException) -> str:
    """MLflow's connection errors repeat the whole urllib3 chain; the first 300 characters say it."""
    text = str(exc).strip()
    return text if len(text) <= 300 else f"{text[:300]}..."
