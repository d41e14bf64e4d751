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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from fruitstack.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    fruits_pb2,
    fruits_pb2_grpc,
    predictions_pb2,
    predictions_pb2_grpc,
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

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


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
    """Async client of the backend's FruitService, PredictionService and health service.

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

    async def update_model(self) -> ModelUpdate:
        # Loading and verifying a model takes longer than a lookup.
        response = await self._call(
            self._predictions().UpdateModel,
            predictions_pb2.UpdateModelRequest(),
            timeout_s=self._timeout_s * 3,
        )
        return ModelUpdate(
            previous_version=response.previous_version, current_version=response.current_version
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
