"""PredictionService: a thin adapter from fruitstack.v1 messages to the Predictor and back.

Errors are the backend's own exceptions (backend.exceptions); backend/interceptors.py turns them
into status codes. Each call's remaining deadline is the model call's timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from backend.auth.caller import signed_in_name
from backend.auth.tokens import TokenCodec
from backend.exceptions import DeadlineExceeded, InvalidArgument
from backend.messages import shorten
from backend.monitoring.prediction_log import PredictionLog
from backend.prediction import ModelInfo, Predictor, wire
from backend.prediction.schema import FloatArray
from backend.prediction.versions import ModelVersion, parse_version

_Context = aio.ServicerContext[Any, Any]


class PredictionServicer(predictions_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        predictor: Predictor,
        *,
        log: PredictionLog | None,
        tokens: TokenCodec,
        max_batch_rows: int | None = None,
        max_batch_s: float | None = None,
    ) -> None:
        self._predictor = predictor
        self._log = log  # None: predictions are not logged (PREDICTION_LOG_ENABLED=false)
        self._tokens = tokens  # to name the admin who pinned a rollback
        # Without them a PredictBatch stream runs as long as its client keeps sending rows.
        self._max_batch_rows = max_batch_rows
        self._max_batch_s = max_batch_s

    async def Predict(
        self, request: predictions_pb2.PredictRequest, context: _Context
    ) -> predictions_pb2.PredictResponse:
        began = time.perf_counter()
        features = dict(request.features)
        prediction = await self._predictor.predict(features, time_left=context.time_remaining())
        prediction_id = ""
        if self._log is not None:
            prediction_id = self._log.record(
                features=features,
                label=prediction.label,
                probabilities=prediction.probabilities,
                model_version=prediction.model_version,
                latency_ms=(time.perf_counter() - began) * 1000,
            )
        return predictions_pb2.PredictResponse(
            label=prediction.label,
            probabilities=prediction.probabilities,
            model_version=prediction.model_version,
            prediction_id=prediction_id,
        )

    async def PredictBatch(
        self,
        request_iterator: AsyncIterator[predictions_pb2.PredictBatchRequest],
        context: _Context,
    ) -> AsyncIterator[predictions_pb2.PredictBatchResponse]:
        time_left = context.time_remaining()
        longest = self._max_batch_s
        deadline = None  # the server's, when it is before the client's (grpc enforces the client's)
        if longest is not None and (time_left is None or time_left > longest):
            time_left = longest
            # It bounds every wait of this generator: for the client's next chunk and for the model
            # (whose calls get time_left too). It must not span the `yield`, where grpc is writing
            # in this task: it would cancel grpc's write instead.
            deadline = asyncio.get_running_loop().time() + longest
        results = self._predictor.predict_bulk(
            _column_chunks(request_iterator, max_rows=self._max_batch_rows), time_left=time_left
        )
        row_offset = 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    result = await anext(results)
            except StopAsyncIteration:
                break
            except TimeoutError:
                await results.aclose()
                raise self._too_long() from None
            if self._log is not None:
                self._log.summarise_bulk(
                    model_version=result.model_version,
                    columns={n: result.features[:, j] for j, n in enumerate(result.feature_names)},
                    label_indices=result.label_indices,
                    classes=result.classes,
                )
            yield wire.bulk_response(
                model_version=result.model_version,
                classes=result.classes,
                label_indices=result.label_indices,
                probabilities=result.probabilities,
                row_offset=row_offset,
            )
            row_offset += len(result.label_indices)
            if deadline is not None and asyncio.get_running_loop().time() > deadline:
                await results.aclose()
                raise self._too_long()

    def _too_long(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"PredictBatch ran for the server's maximum of {self._max_batch_s:g} s per call; send the "
            "rows over several calls"
        )

    async def GetModel(
        self, request: predictions_pb2.GetModelRequest, context: _Context
    ) -> predictions_pb2.GetModelResponse:
        info = await self._predictor.model(time_left=context.time_remaining())
        return predictions_pb2.GetModelResponse(model=_model_message(info))

    async def UpdateModel(
        self, request: predictions_pb2.UpdateModelRequest, context: _Context
    ) -> predictions_pb2.UpdateModelResponse:
        version = parse_version(request.version)
        update = await self._predictor.update_model(
            version=version, by=signed_in_name(context, self._tokens), time_left=context.time_remaining()
        )
        return predictions_pb2.UpdateModelResponse(
            previous_version=update.previous_version, current_version=update.current_version
        )

    async def UnpinModel(
        self, request: predictions_pb2.UnpinModelRequest, context: _Context
    ) -> predictions_pb2.UnpinModelResponse:
        unpinned = await self._predictor.unpin(
            by=signed_in_name(context, self._tokens), time_left=context.time_remaining()
        )
        return predictions_pb2.UnpinModelResponse(unpinned_version=unpinned)

    async def ServeChampion(
        self, request: predictions_pb2.ServeChampionRequest, context: _Context
    ) -> predictions_pb2.ServeChampionResponse:
        # UpdateModel without a version, as a method of its own so that the policy table can let the
        # runner's service account do this and nothing else.
        update = await self._predictor.update_model(version="", time_left=context.time_remaining())
        return predictions_pb2.ServeChampionResponse(
            previous_version=update.previous_version, current_version=update.current_version
        )

    async def ListModelVersions(
        self, request: predictions_pb2.ListModelVersionsRequest, context: _Context
    ) -> predictions_pb2.ListModelVersionsResponse:
        registered = await self._predictor.list_versions(time_left=context.time_remaining())
        response = predictions_pb2.ListModelVersionsResponse(
            name=registered.name,
            served_version=registered.served_version,
            champion=registered.champion,
            versions=[_version_message(v) for v in registered.versions],
        )
        if registered.pin is not None:
            pin = registered.pin
            response.pin.CopyFrom(
                predictions_pb2.ModelPin(version=pin.version, pinned_by=pin.by, reason=pin.reason)
            )
            _set_time(response.pin.pinned_at, pin.at)
        return response


async def _column_chunks(
    requests: AsyncIterator[predictions_pb2.PredictBatchRequest], *, max_rows: int | None
) -> AsyncIterator[dict[str, FloatArray]]:
    rows = 0
    async for request in requests:
        chunk: dict[str, FloatArray] = {}
        for column in request.columns:
            if column.name in chunk:
                raise InvalidArgument(
                    f"column {shorten(column.name)!r} appears more than once in one request"
                )
            chunk[column.name] = wire.array(column)
        # Counted before the chunk is scored; columns of unequal length are refused when it is.
        rows += max((len(values) for values in chunk.values()), default=0)
        if max_rows is not None and rows > max_rows:
            raise InvalidArgument(
                f"PredictBatch takes at most {max_rows:,} rows per call and this stream has sent {rows:,}; "
                "send the rest in another call"
            )
        yield chunk


def _model_message(info: ModelInfo) -> predictions_pb2.Model:
    model = predictions_pb2.Model(
        name=info.name,
        version=info.version,
        dataset=info.dataset,
        features=[
            predictions_pb2.Feature(name=f.name, min=f.min, max=f.max, mean=f.mean) for f in info.features
        ],
        classes=info.classes,
        metrics=info.metrics,
        training_sample=predictions_pb2.DataSample(
            columns=[wire.column(name, values) for name, values in info.sample_columns.items()],
            labels=info.sample_labels,
        ),
    )
    if info.trained_at is not None:
        model.trained_at.FromDatetime(info.trained_at)
    model.run_id = info.run_id
    model.aliases.extend(info.aliases)
    if info.registry is not None:
        status = info.registry
        model.registry.reachable = bool(status.reachable)
        model.registry.error = status.error
        model.registry.champion = status.champion
        _set_time(model.registry.checked_at, status.checked_at)
    return model


def _version_message(version: ModelVersion) -> predictions_pb2.ModelVersion:
    gate = version.gate
    message = predictions_pb2.ModelVersion(
        version=version.version,
        run_id=version.run_id,
        aliases=version.aliases,
        metrics=version.metrics,
        sha256=version.sha256,
        gate=predictions_pb2.GateDecision(
            decision=gate.decision,
            metric=gate.metric,
            margin=gate.margin or 0.0,
            candidate_score=gate.candidate_score or 0.0,
            champion_version=gate.champion_version,
            reason=gate.reason,
            pinned_version=gate.pinned_version,
        ),
    )
    if gate.champion_score is not None:
        message.gate.champion_score = gate.champion_score
    _set_time(message.created_at, version.created_at)
    _set_time(message.gate.decided_at, gate.decided_at)
    return message


def _set_time(field: Timestamp, value: datetime | None) -> None:
    if value is not None:
        field.FromDatetime(value)
