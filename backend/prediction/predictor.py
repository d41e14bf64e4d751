"""The Predictor: the backend's one door to the model service (no gRPC types in here)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from backend.exceptions import InvalidArgument, NotFound, Unavailable
from backend.prediction.coalescer import Coalescer
from backend.prediction.model_client import ModelClient
from backend.prediction.schema import FloatArray, ModelInfo
from backend.prediction.versions import ModelVersions

SCHEMA_RECHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    probabilities: dict[str, float]
    model_version: str


@dataclass(frozen=True, slots=True)
class BulkPrediction:
    """Scores of one chunk of rows: probabilities (n_rows, n_classes) in `classes` order."""

    model_version: str
    classes: tuple[str, ...]
    label_indices: npt.NDArray[np.intp]
    probabilities: FloatArray
    # The chunk's input, (n_rows, n_features) in `feature_names` order (monitoring summarises it).
    features: FloatArray
    feature_names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Query:
    """One single prediction waiting to join a batch: its features as checked against `version`."""

    features: Mapping[str, float]
    row: list[float]
    version: str


@dataclass(frozen=True, slots=True)
class ModelUpdate:
    previous_version: str
    current_version: str


class Predictor:
    """Validates input against the cached model schema and scores it through the model service.

    Single predictions are coalesced into `/predict_rows` batches; bulk chunks go as `.npy` to
    `/predict_bulk`, several in flight at once. `time_left` arguments are the caller's remaining
    deadline in seconds (None: the client's default), passed on as the HTTP timeout.
    """

    def __init__(
        self,
        client: ModelClient,
        *,
        max_in_flight: int = 1,
        bulk_window: int = 2,
    ) -> None:
        self._client = client
        self._schema: ModelInfo | None = None
        self._schema_lock = asyncio.Lock()
        self._schema_read_at = -math.inf  # time.monotonic() of the last /model answer
        self._coalescer: Coalescer[_Query, Prediction] = Coalescer(
            self._score_rows, max_in_flight=max_in_flight
        )
        self._bulk_window = bulk_window

    # ---- schema -------------------------------------------------------------------------------

    async def model(self, *, time_left: float | None = None) -> ModelInfo:
        """The model in service, asked afresh (and cached for validating predictions)."""
        info = ModelInfo.from_json(await self._client.model(time_left=time_left))
        self._schema = info
        self._schema_read_at = time.monotonic()
        return info

    async def current_model(self, *, time_left: float | None = None) -> ModelInfo:
        """The model in service as last read (read now when not known yet)."""
        return await self._current_schema(time_left)

    async def version_info(self, version: str, *, time_left: float | None = None) -> ModelInfo:
        """What the model service says of a registered version (served or not); NOT_FOUND if none."""
        await self._check_registered(version, time_left)
        return ModelInfo.from_json(await self._client.version_info(version, time_left=time_left))

    async def _check_registered(self, version: str, time_left: float | None) -> None:
        """NOT_FOUND, with what is registered, for a version never registered."""
        registered = await self.list_versions(time_left=time_left)
        known = [v.version for v in registered.versions]
        if version not in known:
            shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
            raise NotFound(
                f"{registered.name} has no registered version {version!r} (registered: {shown or 'none'})"
            )

    async def _current_schema(self, time_left: float | None) -> ModelInfo:
        if self._schema is not None:
            return self._schema
        async with self._schema_lock:  # one fetch however many callers arrive first
            if self._schema is None:
                await self.model(time_left=time_left)
            assert self._schema is not None
            return self._schema

    async def _refresh_schema(self, stale_version: str | None, time_left: float | None) -> ModelInfo:
        """Fetch the schema again if the cache still holds `stale_version` (None: in any case).

        Concurrent callers that saw the same stale version thus cause one fetch, not one each.
        """
        async with self._schema_lock:
            if stale_version is None or self._schema is None or self._schema.version == stale_version:
                await self.model(time_left=time_left)
            assert self._schema is not None
            return self._schema

    # ---- single predictions -------------------------------------------------------------------

    async def predict(self, features: Mapping[str, float], *, time_left: float | None = None) -> Prediction:
        schema = await self._current_schema(time_left)
        try:
            row = schema.row(features)  # fail fast, before joining a batch
        except InvalidArgument:
            # The model may have been replaced behind our back (a reload not made through us) and
            # expect other features; check at most once a second so bad input cannot flood /model.
            if time.monotonic() - self._schema_read_at < SCHEMA_RECHECK_S:
                raise
            schema = await self._refresh_schema(schema.version, time_left)
            row = schema.row(features)
        return await self._coalescer.submit(_Query(features, row, schema.version), time_left=time_left)

    async def _score_rows(
        self, batch: list[_Query], time_left: float | None
    ) -> list[Prediction | BaseException]:
        # Two attempts: when the model changed under us (UpdateModel), re-read the schema and retry once.
        for attempt in range(2):
            schema = await self._current_schema(time_left)
            results: list[Prediction | BaseException | None] = []  # None: still to be scored
            rows: list[list[float]] = []
            for query in batch:
                try:
                    # Checked at submit time; only a schema that changed since needs a second look.
                    rows.append(query.row if query.version == schema.version else schema.row(query.features))
                    results.append(None)
                except InvalidArgument as exc:
                    results.append(exc)
            if not rows:
                return [r for r in results if r is not None]
            try:
                answer = await self._client.predict_rows(rows, time_left=time_left)
            except InvalidArgument:
                if attempt == 0 and (await self._refresh_schema(None, time_left)).version != schema.version:
                    continue
                raise
            if answer.model_version != schema.version:
                fresh = await self._refresh_schema(schema.version, time_left)
                if fresh.feature_names != schema.feature_names:
                    if attempt == 0:
                        continue
                    raise Unavailable("the model changed during the call; retry")
            scored = iter(enumerate(zip(answer.labels, answer.probabilities, strict=True)))
            classes = answer.classes
            version = answer.model_version
            done: list[Prediction | BaseException] = []
            for result in results:
                if result is None:
                    i, (label, probabilities) = next(scored)
                    if i in answer.errors:  # this caller's input cannot be scored; the others can
                        result = InvalidArgument(answer.errors[i])
                    else:
                        result = Prediction(label, dict(zip(classes, probabilities, strict=True)), version)
                done.append(result)
            return done
        raise AssertionError("unreachable")

    # ---- bulk ---------------------------------------------------------------------------------

    async def _score_matrix(
        self, schema: ModelInfo, x: FloatArray, row_offset: int, time_left: float | None
    ) -> BulkPrediction:
        if len(x) == 0:
            empty = np.empty((0, len(schema.classes)))
            return BulkPrediction(
                schema.version, schema.classes, np.empty(0, dtype=np.intp), empty, x, schema.feature_names
            )
        answer = await self._client.predict_bulk(x, row_offset=row_offset, time_left=time_left)
        if answer.model_version and answer.model_version != schema.version:
            fresh = await self._refresh_schema(schema.version, time_left)
            if fresh.feature_names != schema.feature_names or fresh.classes != schema.classes:
                raise Unavailable("the model changed during the call; retry")
            schema = fresh
        probabilities = answer.probabilities
        if probabilities.shape != (len(x), len(schema.classes)):
            raise Unavailable(
                f"the model service answered shape {probabilities.shape} for {len(x)} rows "
                f"and {len(schema.classes)} classes"
            )
        version = answer.model_version or schema.version
        return BulkPrediction(
            version, schema.classes, probabilities.argmax(axis=1), probabilities, x, schema.feature_names
        )

    async def predict_bulk(
        self, chunks: AsyncIterable[Mapping[str, FloatArray]], *, time_left: float | None = None
    ) -> AsyncGenerator[BulkPrediction]:
        """Score a stream of chunks in order, keeping `bulk_window` model calls in flight.

        Pipelining lets the backend decode chunk k+1 and encode chunk k-1 while the model service
        scores chunk k, which matters on two cores shared by both processes.
        """
        pending: asyncio.Queue[asyncio.Future[BulkPrediction] | None] = asyncio.Queue(self._bulk_window)
        deadline = None if time_left is None else time.monotonic() + time_left

        def remaining() -> float | None:  # the time_left is for the whole stream, not each chunk
            return None if deadline is None else deadline - time.monotonic()

        async def feed() -> None:
            row_offset = 0  # the chunk's first row in the stream: errors name rows as the caller counts
            try:
                async for columns in chunks:
                    schema = await self._current_schema(remaining())
                    future: asyncio.Future[BulkPrediction] = asyncio.get_running_loop().create_future()
                    try:
                        x = schema.matrix(columns, row_offset=row_offset)
                    except InvalidArgument as exc:
                        future.set_exception(exc)
                        await pending.put(future)
                        return
                    scoring = self._score_matrix(schema, x, row_offset, remaining())
                    await pending.put(asyncio.ensure_future(scoring))
                    row_offset += len(x)
            except Exception as exc:
                failed: asyncio.Future[BulkPrediction] = asyncio.get_running_loop().create_future()
                failed.set_exception(exc)
                await pending.put(failed)
            finally:
                await pending.put(None)

        feeder = asyncio.ensure_future(feed())
        try:
            while (future := await pending.get()) is not None:
                yield await future
        finally:
            feeder.cancel()
            while not pending.empty():
                leftover = pending.get_nowait()
                if leftover is not None:
                    leftover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    # ---- model updates ------------------------------------------------------------------------

    async def update_model(
        self, *, version: str = "", by: str = "", time_left: float | None = None
    ) -> ModelUpdate:
        """Serve `version` (checked by versions.parse_version; "" = the champion), then re-read the schema.

        A named version is looked up first, so that one never registered is NOT_FOUND with the list
        of what is, rather than the model service's generic refusal.
        """
        if version:
            await self._check_registered(version, time_left)
        data = await self._client.reload(version=version, by=by, time_left=time_left)
        update = ModelUpdate(str(data["previous_version"]), str(data["current_version"]))
        await self._refresh_schema(None, time_left)
        return update

    async def unpin(self, *, by: str, time_left: float | None = None) -> str:
        """Lift a rollback's pin; the version that was pinned ("" when none was)."""
        data = await self._client.unpin(by=by, time_left=time_left)
        return str(data.get("unpinned_version") or "")

    async def list_versions(self, *, time_left: float | None = None) -> ModelVersions:
        return ModelVersions.from_json(await self._client.versions(time_left=time_left))

    # ---- readiness ----------------------------------------------------------------------------

    async def check_ready(self) -> None:
        """Return when the model service is ready (BentoML `/readyz`); raise Unavailable when not."""
        if not await self._client.ready():
            self._schema = None  # whatever comes back may serve another model
            raise Unavailable(f"the model service at {self._client.base_url} is not ready")

    async def close(self) -> None:
        """Let batches in flight finish (the model client is closed by its owner)."""
        await self._coalescer.close()
