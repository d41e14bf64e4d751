"""A small typed async client of the backend: plain dataclasses out, frontend.exceptions on failure.

gRPC and protobuf types never leave this module, so the Shiny modules (and their tests) deal only
with the dataclasses below.

Sign-in is per browser session: the app makes one `Credentials` per session and a client bound to
it (`client.for_session(credentials)`), which shares the one channel but sends that session's
token, and only that, as `authorization: Bearer ...` metadata on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from fruitstack.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    fruits_pb2,
    fruits_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    predictions_pb2,
    predictions_pb2_grpc,
    retraining_pb2,
    retraining_pb2_grpc,
)
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from frontend.exceptions import (
    BackendError,
    BackendUnreachable,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    NotSignedIn,
    PermissionDenied,
    Unavailable,
)

FRUIT_SERVICE = "fruitstack.v1.FruitService"
PREDICTION_SERVICE = "fruitstack.v1.PredictionService"


@dataclass(frozen=True)
class Fruit:
    id: str
    name: str
    created_at: datetime | None


@dataclass(frozen=True)
class FruitPage:
    fruits: tuple[Fruit, ...]
    next_page_token: str
    total_size: int


@dataclass(frozen=True)
class FruitCount:
    name: str
    count: int


@dataclass(frozen=True)
class FruitSummary:
    counts: tuple[FruitCount, ...]
    total: int


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: Mapping[str, float]
    model_version: str
    prediction_id: str = ""  # for record_feedback; "" when the backend logs no predictions


@dataclass(frozen=True)
class FeatureRange:
    name: str
    min: float
    max: float
    mean: float


@dataclass(frozen=True)
class TrainingSample:
    columns: Mapping[str, Sequence[float]]
    labels: Sequence[str]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    dataset: str
    features: tuple[FeatureRange, ...]
    classes: tuple[str, ...]
    metrics: Mapping[str, float]
    trained_at: datetime | None
    training_sample: TrainingSample = field(repr=False)
    run_id: str = ""
    aliases: tuple[str, ...] = ()
    # The model service's last look at the registry: reachable, and why not.
    registry_reachable: bool = True
    registry_error: str = ""

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


@dataclass(frozen=True)
class GateDecision:
    decision: str  # "champion", "challenger", "manual" or "" (never gated)
    metric: str
    candidate_score: float
    champion_score: float | None
    champion_version: str
    reason: str
    pinned_version: str = ""  # the pin that held back a version the gate would have promoted


@dataclass(frozen=True)
class ModelPin:
    """The champion pinned by a person's rollback: the gate promotes nothing until it is lifted."""

    version: str
    pinned_by: str
    pinned_at: datetime | None
    reason: str


@dataclass(frozen=True)
class ModelVersion:
    version: str
    run_id: str
    created_at: datetime | None
    aliases: tuple[str, ...]
    metrics: Mapping[str, float]
    gate: GateDecision

    @property
    def is_champion(self) -> bool:
        return "champion" in self.aliases


@dataclass(frozen=True)
class ModelVersions:
    name: str
    served_version: str
    champion: str
    versions: tuple[ModelVersion, ...]  # newest first
    pin: ModelPin | None = None


@dataclass(frozen=True)
class ModelUpdate:
    previous_version: str
    current_version: str

    @property
    def changed(self) -> bool:
        return self.previous_version != self.current_version


@dataclass(frozen=True)
class BulkChunk:
    """The scores of one chunk of rows, in the order they were sent."""

    model_version: str
    row_offset: int
    classes: tuple[str, ...]
    labels: tuple[str, ...]
    # One sequence per class (keyed by class name), one probability per row.
    probabilities: Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class Feedback:
    label: str
    predicted_label: str
    correct: bool
    replaced: bool


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    test: str
    statistic: float
    threshold: float
    drift: bool
    window_size: int
    reference_size: int
    # Both distributions over the same bins (len(edges) - 1 fractions each).
    edges: tuple[float, ...]
    reference_fractions: tuple[float, ...]
    window_fractions: tuple[float, ...]


@dataclass(frozen=True)
class LabelDrift:
    test: str
    statistic: float
    threshold: float
    drift: bool
    window_counts: Mapping[str, int]
    reference_shares: Mapping[str, float]


@dataclass(frozen=True)
class DriftReport:
    model_version: str
    window_size: int
    reference_size: int
    drift: bool
    alpha: float
    window_start: datetime | None
    window_end: datetime | None
    features: tuple[FeatureDrift, ...]
    labels: LabelDrift | None


@dataclass(frozen=True)
class VersionAccuracy:
    model_version: str
    labelled: int
    correct: int
    accuracy: float


@dataclass(frozen=True)
class TimePoint:
    """A bin of a series: (predictions, bulk rows) or (labelled, correct)."""

    start: datetime
    a: int
    b: int


@dataclass(frozen=True)
class LiveAccuracy:
    versions: tuple[VersionAccuracy, ...]
    over_time: tuple[TimePoint, ...]


@dataclass(frozen=True)
class DriftCheck:
    at: datetime
    model_version: str
    score: float
    drift: bool
    window_size: int
    drifted: tuple[str, ...]


@dataclass(frozen=True)
class MonitoringStatus:
    logged: int
    dropped: int
    queued: int
    recent_checks: tuple[DriftCheck, ...]  # newest first
    drift_events: tuple[DriftCheck, ...]


@dataclass(frozen=True)
class RetrainingOutcome:
    result: str  # "promoted", "not promoted", "skipped" or "failed"
    detail: str
    metric: str
    candidate_score: float | None
    champion_score: float | None
    candidate_version: str
    champion_version: str
    served_version: str
    duration_s: float
    feedback_rows: int  # feedback rows trained and evaluated on
    train_rows: int
    eval_rows: int


@dataclass(frozen=True)
class RetrainingRun:
    id: str
    name: str
    trigger: str  # "schedule", "on demand" or "drift"
    reason: str
    state: str  # Prefect's: Scheduled, Pending, Running, Completed, Failed, Cancelled, ...
    state_message: str
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: RetrainingOutcome | None


@dataclass(frozen=True)
class RetrainingStatus:
    deployment: str
    prefect_reachable: bool
    prefect_error: str
    schedule_interval_s: float
    next_run_at: datetime | None
    runs: tuple[RetrainingRun, ...]  # newest first
    history_error: str


@dataclass(frozen=True)
class RetrainAsked:
    run: RetrainingRun  # the run that will serve the ask: new, or the one already waiting (merged)
    running: RetrainingRun | None  # the run going: `run` starts after it
    merged: bool = False  # no new run: `run` was already waiting to start


@dataclass(frozen=True)
class Health:
    """What the backend reports about itself and its dependencies; None means "cannot tell"."""

    backend: bool
    fruit_store: bool | None
    model_service: bool | None


# The backend's roles, weakest first; each includes the ones before it.
ROLES = ("viewer", "editor", "admin")
_ROLE_NAMES = {auth_pb2.ROLE_VIEWER: "viewer", auth_pb2.ROLE_EDITOR: "editor", auth_pb2.ROLE_ADMIN: "admin"}


@dataclass(frozen=True)
class SignedIn:
    username: str
    role: str  # one of ROLES
    token: str = field(repr=False)
    expires_at: datetime | None

    def may(self, role: str) -> bool:
        """Whether this user has `role` or a stronger one."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class UserAccount:
    """A user as an admin sees it."""

    username: str
    role: str  # one of ROLES
    created_at: datetime | None
    disabled: bool


def _account(message: auth_pb2.User) -> UserAccount:
    return UserAccount(
        username=message.username,
        role=_ROLE_NAMES.get(message.role, "viewer"),
        created_at=_timestamp(message.created_at, message.HasField("created_at")),
        disabled=message.disabled,
    )


_ROLE_VALUES = {name: value for value, name in _ROLE_NAMES.items()}


class Credentials:
    """One browser session's sign-in. Never shared: each session makes its own.

    `rejections` counts the calls the backend refused as not signed in while this session sent a
    token (it expired, or the backend restarted with another key); the app watches it to ask for
    a new sign-in. It is a plain counter, not a reactive value, because the client updates it
    from inside running tasks.
    """

    def __init__(self) -> None:
        self.token: str | None = None
        self.rejections = 0
        self.last_rejection = ""


Response = TypeVar("Response")

# Status codes that mean "try again later" rather than "this request is wrong".
_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def _timestamp(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def _last(span_s: int) -> monitoring_pb2.TimeRange:
    """The time range ending now and reaching span_s seconds back."""
    time_range = monitoring_pb2.TimeRange()
    now = datetime.now(UTC)
    time_range.end.FromDatetime(now)
    time_range.start.FromDatetime(now - timedelta(seconds=span_s))
    return time_range


def _fruit(message: fruits_pb2.Fruit) -> Fruit:
    return Fruit(
        id=message.id,
        name=message.name,
        created_at=_timestamp(message.created_at, message.HasField("created_at")),
    )


def _model(message: predictions_pb2.Model) -> ModelInfo:
    sample = message.training_sample
    return ModelInfo(
        name=message.name,
        version=message.version,
        dataset=message.dataset,
        features=tuple(FeatureRange(f.name, f.min, f.max, f.mean) for f in message.features),
        classes=tuple(message.classes),
        metrics=dict(message.metrics),
        trained_at=_timestamp(message.trained_at, message.HasField("trained_at")),
        training_sample=TrainingSample(
            columns={c.name: list(c.values) for c in sample.columns}, labels=list(sample.labels)
        ),
        run_id=message.run_id,
        aliases=tuple(message.aliases),
        registry_reachable=message.registry.reachable or not message.HasField("registry"),
        registry_error=message.registry.error,
    )


def _version(message: predictions_pb2.ModelVersion) -> ModelVersion:
    gate = message.gate
    return ModelVersion(
        version=message.version,
        run_id=message.run_id,
        created_at=_timestamp(message.created_at, message.HasField("created_at")),
        aliases=tuple(message.aliases),
        metrics=dict(message.metrics),
        gate=GateDecision(
            decision=gate.decision,
            metric=gate.metric,
            candidate_score=gate.candidate_score,
            champion_score=gate.champion_score if gate.HasField("champion_score") else None,
            champion_version=gate.champion_version,
            reason=gate.reason,
            pinned_version=gate.pinned_version,
        ),
    )


def _retraining_run(message: retraining_pb2.RetrainingRun) -> RetrainingRun:
    outcome = None
    if message.HasField("outcome"):
        o = message.outcome
        outcome = RetrainingOutcome(
            result=o.result,
            detail=o.detail,
            metric=o.metric,
            candidate_score=o.candidate_score if o.HasField("candidate_score") else None,
            champion_score=o.champion_score if o.HasField("champion_score") else None,
            candidate_version=o.candidate_version,
            champion_version=o.champion_version,
            served_version=o.served_version,
            duration_s=o.duration_s,
            feedback_rows=o.data.feedback_train_rows + o.data.feedback_eval_rows,
            train_rows=o.data.train_rows,
            eval_rows=o.data.eval_rows,
        )
    return RetrainingRun(
        id=message.id,
        name=message.name,
        trigger=message.trigger,
        reason=message.reason,
        state=message.state,
        state_message=message.state_message,
        scheduled_at=_timestamp(message.scheduled_at, message.HasField("scheduled_at")),
        started_at=_timestamp(message.started_at, message.HasField("started_at")),
        finished_at=_timestamp(message.finished_at, message.HasField("finished_at")),
        outcome=outcome,
    )


def _bulk_chunk(message: predictions_pb2.PredictBatchResponse) -> BulkChunk:
    classes = tuple(message.classes)
    try:
        labels = tuple(classes[i] for i in message.label_indices)
    except IndexError:
        raise BackendError("the backend answered a label index outside its list of classes") from None
    return BulkChunk(
        model_version=message.model_version,
        row_offset=message.row_offset,
        classes=classes,
        labels=labels,
        probabilities={c.name: list(c.values) for c in message.probabilities},
    )


class FruitstackClient:
    """Async client of the backend's services (fruits, predictions, monitoring, retraining, health).

    One channel is shared by every browser session: a gRPC channel multiplexes calls. It is opened
    on first use, inside the event loop that serves the app; with `ca_file` it is TLS, trusting
    that CA. Each session calls through `for_session(credentials)`, a view on the same channel
    that sends the session's own token.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 10.0,
        bulk_timeout_s: float = 900.0,
        ca_file: Path | None = None,
    ) -> None:
        self.address = address
        self._timeout_s = timeout_s
        self._bulk_timeout_s = bulk_timeout_s
        self._ca_file = ca_file
        # A one-element list so that every view from for_session() shares the channel.
        self._shared: list[aio.Channel | None] = [None]
        self._credentials: Credentials | None = None

    def for_session(self, credentials: Credentials) -> FruitstackClient:
        """The same client (and channel), sending `credentials`' token on every call."""
        view = copy.copy(self)
        view._credentials = credentials
        return view

    @property
    def _channel(self) -> aio.Channel | None:
        return self._shared[0]

    def _open(self) -> aio.Channel:
        channel = self._shared[0]
        if channel is None:
            if self._ca_file is None:
                channel = aio.insecure_channel(self.address)
            else:
                credentials = grpc.ssl_channel_credentials(root_certificates=self._ca_file.read_bytes())
                channel = aio.secure_channel(self.address, credentials)
            self._shared[0] = channel
        return channel

    # The *AsyncStub types exist only in the stubs (.pyi): the Stub classes return them for an aio channel.
    def _fruits(self) -> fruits_pb2_grpc.FruitServiceAsyncStub:
        return fruits_pb2_grpc.FruitServiceStub(self._open())

    def _predictions(self) -> predictions_pb2_grpc.PredictionServiceAsyncStub:
        return predictions_pb2_grpc.PredictionServiceStub(self._open())

    def _auth(self) -> auth_pb2_grpc.AuthServiceAsyncStub:
        return auth_pb2_grpc.AuthServiceStub(self._open())

    def _monitoring(self) -> monitoring_pb2_grpc.MonitoringServiceAsyncStub:
        return monitoring_pb2_grpc.MonitoringServiceStub(self._open())

    def _retraining(self) -> retraining_pb2_grpc.RetrainingServiceAsyncStub:
        return retraining_pb2_grpc.RetrainingServiceStub(self._open())

    async def close(self) -> None:
        if self._shared[0] is not None:
            await self._shared[0].close(None)
            self._shared[0] = None

    @contextlib.contextmanager
    def _errors(self, sent_token: str | None) -> Iterator[None]:
        """The one place where gRPC status codes become frontend.exceptions (unary and streaming calls).

        sent_token is the token the call carried: only a refusal of the session's current token
        counts as its sign-in ending (a call sent before signing in may be refused after it).
        """
        try:
            yield
        except aio.AioRpcError as exc:
            raise self._error(exc, sent_token) from None

    def _error(self, exc: aio.AioRpcError, sent_token: str | None) -> BackendError:
        code = exc.code()
        message = exc.details() or code.name.lower().replace("_", " ")
        if code == grpc.StatusCode.UNAVAILABLE and not self._connected():
            return BackendUnreachable(f"the backend at {self.address} cannot be reached", code=code.name)
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            return InvalidRequest(message, code=code.name)
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(message, code=code.name)
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return FailedPrecondition(message, code=code.name)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            credentials = self._credentials
            if credentials is not None and sent_token is not None and credentials.token == sent_token:
                credentials.rejections += 1
                credentials.last_rejection = message
            return NotSignedIn(message, code=code.name)
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return PermissionDenied(message, code=code.name)
        if code in _UNAVAILABLE_CODES:
            return Unavailable(message, code=code.name)
        return BackendError(message, code=code.name)

    def _token(self) -> str | None:
        return self._credentials.token if self._credentials is not None else None

    def _options(self, timeout_s: float, token: str | None) -> dict[str, Any]:
        """What every call carries: its deadline and, when the session is signed in, its token."""
        if token is None:
            return {"timeout": timeout_s}
        return {"timeout": timeout_s, "metadata": (("authorization", f"Bearer {token}"),)}

    async def _call(
        self,
        rpc: Callable[..., Awaitable[Response]],
        request: object,
        *,
        timeout_s: float | None = None,
    ) -> Response:
        """One unary call with the client's deadline, the session's token and error mapping."""
        token = self._token()
        with self._errors(token):
            return await rpc(request, **self._options(timeout_s or self._timeout_s, token))

    def _connected(self) -> bool:
        # A dependency outage comes back as UNAVAILABLE over a READY channel; a backend that is
        # down leaves the channel connecting or failing.
        channel = self._channel
        return channel is not None and channel.get_state() == grpc.ChannelConnectivity.READY

    # AuthService

    async def login(self, *, username: str, password: str) -> SignedIn:
        """Sign in; the answer's token is for the caller to keep (in its session's Credentials)."""
        request = auth_pb2.LoginRequest(username=username, password=password)
        response = await self._call(self._auth().Login, request)
        return SignedIn(
            username=response.user.username,
            role=_ROLE_NAMES.get(response.user.role, "viewer"),
            token=response.access_token,
            expires_at=_timestamp(response.expires_at, response.HasField("expires_at")),
        )

    async def change_password(self, *, old_password: str, new_password: str) -> str:
        """Change the signed-in user's own password; the new token (the session's old one is revoked)."""
        request = auth_pb2.ChangePasswordRequest(old_password=old_password, new_password=new_password)
        response = await self._call(self._auth().ChangePassword, request)
        return response.access_token

    async def list_users(self) -> list[UserAccount]:
        response = await self._call(self._auth().ListUsers, auth_pb2.ListUsersRequest())
        return [_account(u) for u in response.users]

    async def create_user(self, *, username: str, password: str, role: str) -> UserAccount:
        request = auth_pb2.CreateUserRequest(
            username=username, password=password, role=_ROLE_VALUES.get(role, auth_pb2.ROLE_UNSPECIFIED)
        )
        return _account((await self._call(self._auth().CreateUser, request)).user)

    async def set_user_role(self, *, username: str, role: str) -> UserAccount:
        request = auth_pb2.SetUserRoleRequest(
            username=username, role=_ROLE_VALUES.get(role, auth_pb2.ROLE_UNSPECIFIED)
        )
        return _account((await self._call(self._auth().SetUserRole, request)).user)

    async def set_user_disabled(self, *, username: str, disabled: bool) -> UserAccount:
        if disabled:
            response = await self._call(
                self._auth().DisableUser, auth_pb2.DisableUserRequest(username=username)
            )
            return _account(response.user)
        enabled = await self._call(self._auth().EnableUser, auth_pb2.EnableUserRequest(username=username))
        return _account(enabled.user)

    async def delete_user(self, *, username: str) -> None:
        await self._call(self._auth().DeleteUser, auth_pb2.DeleteUserRequest(username=username))

    async def reset_password(self, *, username: str, new_password: str) -> UserAccount:
        request = auth_pb2.ResetPasswordRequest(username=username, new_password=new_password)
        return _account((await self._call(self._auth().ResetPassword, request)).user)

    # FruitService

    async def add_fruit(self, *, name: str) -> Fruit:
        response = await self._call(self._fruits().AddFruit, fruits_pb2.AddFruitRequest(name=name))
        return _fruit(response.fruit)

    async def list_fruits(self, *, page_size: int, page_token: str = "") -> FruitPage:
        request = fruits_pb2.ListFruitsRequest(page_size=page_size, page_token=page_token)
        response = await self._call(self._fruits().ListFruits, request)
        return FruitPage(
            fruits=tuple(_fruit(f) for f in response.fruits),
            next_page_token=response.next_page_token,
            total_size=response.total_size,
        )

    async def delete_fruit(self, *, fruit_id: str) -> None:
        await self._call(self._fruits().DeleteFruit, fruits_pb2.DeleteFruitRequest(id=fruit_id))

    async def summarize_fruits(self) -> FruitSummary:
        response = await self._call(self._fruits().SummarizeFruits, fruits_pb2.SummarizeFruitsRequest())
        return FruitSummary(
            counts=tuple(FruitCount(c.name, c.count) for c in response.counts), total=response.total
        )

    # PredictionService

    async def predict(self, *, features: Mapping[str, float]) -> Prediction:
        request = predictions_pb2.PredictRequest(features=dict(features))
        response = await self._call(self._predictions().Predict, request)
        return Prediction(
            label=response.label,
            probabilities=dict(response.probabilities),
            model_version=response.model_version,
            prediction_id=response.prediction_id,
        )

    async def predict_bulk(
        self, chunks: AsyncIterable[Mapping[str, Sequence[float]]]
    ) -> AsyncIterator[BulkChunk]:
        """Stream chunks of rows (columnar: feature name -> values) and yield each chunk's scores."""

        async def requests() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
            async for chunk in chunks:
                yield predictions_pb2.PredictBatchRequest(
                    columns=[predictions_pb2.Column(name=n, values=v) for n, v in chunk.items()]
                )

        token = self._token()
        call = self._predictions().PredictBatch(requests(), **self._options(self._bulk_timeout_s, token))
        try:
            with self._errors(token):
                async for response in call:
                    yield _bulk_chunk(response)
        finally:
            call.cancel()

    async def get_model(self) -> ModelInfo:
        response = await self._call(self._predictions().GetModel, predictions_pb2.GetModelRequest())
        return _model(response.model)

    async def update_model(self, *, version: str = "") -> ModelUpdate:
        """Serve `version`, or the registry's champion when empty (a rollback when it is an older one)."""
        # Loading and verifying a model takes longer than a lookup.
        response = await self._call(
            self._predictions().UpdateModel,
            predictions_pb2.UpdateModelRequest(version=version),
            timeout_s=self._timeout_s * 3,
        )
        return ModelUpdate(
            previous_version=response.previous_version, current_version=response.current_version
        )

    async def list_model_versions(self) -> ModelVersions:
        response = await self._call(
            self._predictions().ListModelVersions, predictions_pb2.ListModelVersionsRequest()
        )
        pin = None
        if response.HasField("pin"):
            pin = ModelPin(
                version=response.pin.version,
                pinned_by=response.pin.pinned_by,
                pinned_at=_timestamp(response.pin.pinned_at, response.pin.HasField("pinned_at")),
                reason=response.pin.reason,
            )
        return ModelVersions(
            name=response.name,
            served_version=response.served_version,
            champion=response.champion,
            versions=tuple(_version(v) for v in response.versions),
            pin=pin,
        )

    async def unpin_model(self) -> str:
        """Lift a rollback's pin; the version that was pinned ("" when none was)."""
        response = await self._call(self._predictions().UnpinModel, predictions_pb2.UnpinModelRequest())
        return response.unpinned_version

    # MonitoringService

    async def record_feedback(self, *, prediction_id: str, label: str) -> Feedback:
        request = monitoring_pb2.RecordFeedbackRequest(prediction_id=prediction_id, label=label)
        response = await self._call(self._monitoring().RecordFeedback, request)
        return Feedback(
            label=response.label,
            predicted_label=response.predicted_label,
            correct=response.correct,
            replaced=response.replaced,
        )

    async def drift_report(self, *, last_predictions: int | None = None) -> DriftReport:
        request = monitoring_pb2.GetDriftReportRequest()
        if last_predictions is not None:
            request.last_predictions = last_predictions
        report = (await self._call(self._monitoring().GetDriftReport, request)).report
        labels = report.labels if report.HasField("labels") else None
        return DriftReport(
            model_version=report.model_version,
            window_size=report.window_size,
            reference_size=report.reference_size,
            drift=report.drift,
            alpha=report.alpha,
            window_start=_timestamp(report.window_start, report.HasField("window_start")),
            window_end=_timestamp(report.window_end, report.HasField("window_end")),
            features=tuple(
                FeatureDrift(
                    feature=f.feature,
                    test=f.test,
                    statistic=f.statistic,
                    threshold=f.threshold,
                    drift=f.drift,
                    window_size=f.window_size,
                    reference_size=f.reference_size,
                    edges=tuple(f.reference.edges),
                    reference_fractions=tuple(f.reference.fractions),
                    window_fractions=tuple(f.window.fractions),
                )
                for f in report.features
            ),
            labels=None
            if labels is None
            else LabelDrift(
                test=labels.test,
                statistic=labels.statistic,
                threshold=labels.threshold,
                drift=labels.drift,
                window_counts=dict(labels.window_counts),
                reference_shares=dict(labels.reference_shares),
            ),
        )

    async def live_accuracy(self, *, span_s: int = 3600, interval_s: int = 60) -> LiveAccuracy:
        request = monitoring_pb2.GetLiveAccuracyRequest(time_range=_last(span_s), interval_s=interval_s)
        response = await self._call(self._monitoring().GetLiveAccuracy, request)
        return LiveAccuracy(
            versions=tuple(
                VersionAccuracy(v.model_version, v.labelled, v.correct, v.accuracy) for v in response.versions
            ),
            over_time=tuple(
                TimePoint(p.start.ToDatetime(tzinfo=UTC), p.labelled, p.correct) for p in response.over_time
            ),
        )

    async def prediction_counts(self, *, span_s: int = 3600, interval_s: int = 60) -> tuple[TimePoint, ...]:
        request = monitoring_pb2.GetPredictionCountsRequest(time_range=_last(span_s), interval_s=interval_s)
        response = await self._call(self._monitoring().GetPredictionCounts, request)
        return tuple(
            TimePoint(p.start.ToDatetime(tzinfo=UTC), p.predictions, p.bulk_rows) for p in response.points
        )

    async def monitoring_status(self) -> MonitoringStatus:
        response = await self._call(
            self._monitoring().GetMonitoringStatus, monitoring_pb2.GetMonitoringStatusRequest()
        )

        def check(c: monitoring_pb2.DriftCheck) -> DriftCheck:
            return DriftCheck(
                c.at.ToDatetime(tzinfo=UTC),
                c.model_version,
                c.score,
                c.drift,
                c.window_size,
                tuple(c.drifted),
            )

        return MonitoringStatus(
            logged=response.logged,
            dropped=response.dropped,
            queued=response.queued,
            recent_checks=tuple(check(c) for c in response.recent_checks),
            drift_events=tuple(check(c) for c in response.drift_events),
        )

    # RetrainingService

    async def retrain(self, *, reason: str = "") -> RetrainAsked:
        response = await self._call(self._retraining().Retrain, retraining_pb2.RetrainRequest(reason=reason))
        running = _retraining_run(response.running) if response.HasField("running") else None
        return RetrainAsked(run=_retraining_run(response.run), running=running, merged=response.merged)

    async def retraining_status(self, *, limit: int = 10) -> RetrainingStatus:
        response = await self._call(
            self._retraining().GetRetrainingStatus, retraining_pb2.GetRetrainingStatusRequest(limit=limit)
        )
        return RetrainingStatus(
            deployment=response.deployment,
            prefect_reachable=response.prefect_reachable,
            prefect_error=response.prefect_error,
            schedule_interval_s=response.schedule_interval_s,
            next_run_at=_timestamp(response.next_run_at, response.HasField("next_run_at")),
            runs=tuple(_retraining_run(r) for r in response.runs),
            history_error=response.history_error,
        )

    # Health

    async def health(self) -> Health:
        """Ask the backend's health service about itself and the services behind its dependencies."""
        stub = health_pb2_grpc.HealthStub(self._open())

        async def serving(service: str) -> bool | None:
            try:
                response = await stub.Check(
                    health_pb2.HealthCheckRequest(service=service),
                    **self._options(min(self._timeout_s, 3.0), self._token()),
                )
            except aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None  # this backend does not report that service
                raise
            return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

        try:
            fruit_store, model_service = await asyncio.gather(
                serving(FRUIT_SERVICE), serving(PREDICTION_SERVICE)
            )
        except aio.AioRpcError:
            return Health(backend=False, fruit_store=None, model_service=None)
        return Health(backend=True, fruit_store=fruit_store, model_service=model_service)
