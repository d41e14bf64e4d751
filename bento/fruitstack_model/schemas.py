"""Shapes of the service's JSON answers, declared for BentoML's OpenAPI page (/docs.json).

The APIs return pre-serialised responses for speed, so these models document; they do not convert.
Versions are the MLflow registry's version numbers, as strings ("3"). Errors of every API are
`{"error": message}` (BentoML may wrap that object in a one-element list) with the status of
fruitstack_model/exceptions.py; /reload and /versions answer 503 when the registry is unreachable.
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


class Reference(Documented):
    """The training data's summary that drift is measured against (fruitstack_model/reference.py)."""

    rows: int
    sketches: dict[str, str]  # feature -> base64 of a serialised KLL sketch
    labels: dict[str, int]


class RegistryState(Documented):
    """What the answering worker last learned from the MLflow registry (it polls the champion)."""

    tracking_uri: str
    reachable: bool | None  # None: not asked yet; False: serving what it holds, see `error`
    error: str | None
    checked_at: str | None  # ISO 8601, UTC
    champion: str | None  # the version alias `champion` pointed at then


class ModelInfo(Documented):
    name: str  # the registered model
    version: str  # the registry version served
    run_id: str | None  # the MLflow run that trained it
    aliases: list[str]  # e.g. ["champion"]; [] while a rollback or promotion is under way
    registry: RegistryState
    dataset: str
    features: list[FeatureInfo]
    classes: list[str]
    metrics: Metrics
    confusion_matrix: list[list[int]]
    trained_at: str
    training_sample: TrainingSample
    library_versions: dict[str, str]
    reference: Reference | None  # None for versions trained before drift monitoring
    sha256: str


class Reload(Documented):
    """POST /reload {"version": ""} serves the champion; {"version": "3", "by": "alice"} makes 3 the
    champion and pins it (the gate promotes nothing over it until POST /unpin)."""

    previous_version: str
    current_version: str


class Unpin(Documented):
    """POST /unpin {"by": "alice"}: lift the pin; the gate may promote again from the next run."""

    unpinned_version: str | None  # the version that was pinned; null when nothing was


class PinRecord(Documented):
    """A person's decision that holds: the champion pinned by a rollback."""

    version: str
    by: str
    at: str  # ISO 8601, UTC
    reason: str


class GateRecord(Documented):
    """The promotion gate's tags on a version; every field is null for a version never gated."""

    decision: str | None  # champion | challenger | manual (--promote, or made champion by /reload)
    metric: str | None  # f1_macro | accuracy
    margin: float | None
    candidate_score: float | None  # this version's score on its holdout rows
    champion_score: float | None  # the champion of the time, on the same rows (null: none/incomparable)
    champion_version: str | None
    reason: str | None  # one sentence, e.g. "not promoted: f1_macro 0.3923 < champion v1 0.9230, ..."
    decided_at: str | None
    pinned_version: str | None  # the pin that held back a version the gate would have promoted


class VersionInfo(Documented):
    version: str
    run_id: str | None
    created_at: str  # ISO 8601, UTC
    aliases: list[str]
    metrics: dict[str, float]  # the run's: accuracy, f1_macro, precision.<class>, recall.<class>, f1.<class>
    sha256: str | None  # of model.pkl, recorded at registration
    gate: GateRecord


class Versions(Documented):
    """POST /versions {}: every version of the registered model, newest first."""

    name: str
    served_version: str  # what the answering worker serves
    champion: str | None
    pin: PinRecord | None  # set while a rollback holds the champion
    versions: list[VersionInfo]


class NpyProbabilities(RootModel[bytes]):
    """The bytes of an .npy float64 array (n_rows, n_classes), in the model's class order."""
