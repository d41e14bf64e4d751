"""The prediction log and feedback through a real backend, real nx-27017 and a real `bentoml serve`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import numpy as np
import pytest
from fruitstack.v1 import monitoring_pb2, predictions_pb2
from grpc import aio
from pymongo import AsyncMongoClient

from backend.health_watcher import FRUIT_SERVICE, PREDICTION_SERVICE
from backend.monitoring.repository import BUCKETS, PREDICTIONS, unpack
from backend.prediction import wire
from scripts.processes import NxServer
from tests.fixtures.backend import RunningBackend, backend_in_front_of
from tests.fixtures.model_service import ModelService

IRIS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
CLASSES = {"setosa", "versicolor", "virginica"}


def request(rng: np.random.Generator) -> predictions_pb2.PredictRequest:
    row = rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5])
    return predictions_pb2.PredictRequest(features=dict(zip(IRIS, row.tolist(), strict=True)))


@pytest.fixture
async def store(mongodb_uri: str, mongodb_database: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    yield client[mongodb_database]
    await client.close()


async def logged(pages: Any) -> dict[str, dict[str, Any]]:
    """Every logged prediction, by its id, as the log's pages hold them."""
    return {ref: record async for page in pages.find({}) for ref, record in unpack(page)}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_every_prediction_is_logged_with_what_it_was_asked_and_answered(
    backend_with_model: RunningBackend, store: Any
) -> None:
    rng = np.random.default_rng(0)
    requests = [request(rng) for _ in range(60)]
    answers = await asyncio.gather(*(backend_with_model.predictions.Predict(r, timeout=20) for r in requests))
    ids = [a.prediction_id for a in answers]
    assert len(set(ids)) == 60

    async def all_logged() -> bool:
        return len(await logged(store[PREDICTIONS])) == 60

    await eventually(all_logged, "60 logged predictions")
    by_id = await logged(store[PREDICTIONS])
    # Sent at once, they were written together: pages, not a document per prediction.
    assert await store[PREDICTIONS].count_documents({}) < 60
    for req, answer in zip(requests, answers, strict=True):
        doc = by_id[answer.prediction_id]
        assert doc["features"] == dict(req.features)
        assert doc["label"] == answer.label
        assert doc["probabilities"] == pytest.approx(dict(answer.probabilities))
        assert doc["model_version"] == answer.model_version
        assert doc["latency_ms"] > 0
    status = await backend_with_model.monitoring.GetMonitoringStatus(
        monitoring_pb2.GetMonitoringStatusRequest(), timeout=5
    )
    assert (status.logged, status.dropped) == (60, 0)


async def test_feedback_is_checked_replaced_and_counted_in_live_accuracy(
    backend_with_model: RunningBackend,
) -> None:
    rng = np.random.default_rng(1)
    monitoring = backend_with_model.monitoring
    answers = [await backend_with_model.predictions.Predict(request(rng), timeout=20) for _ in range(10)]
    # Right for the first six, wrong for the other four; sent at once, while still on their way to MongoDB.
    labels = [a.label if i < 6 else next(iter(CLASSES - {a.label})) for i, a in enumerate(answers)]
    results = await asyncio.gather(
        *(
            monitoring.RecordFeedback(
                monitoring_pb2.RecordFeedbackRequest(prediction_id=a.prediction_id, label=label), timeout=10
            )
            for a, label in zip(answers, labels, strict=True)
        )
    )
    assert [r.correct for r in results] == [True] * 6 + [False] * 4
    assert all(not r.replaced for r in results)
    assert all(r.model_version == answers[0].model_version for r in results)

    # A second label replaces the first: the last wrong one becomes right.
    again = await monitoring.RecordFeedback(
        monitoring_pb2.RecordFeedbackRequest(prediction_id=answers[9].prediction_id, label=answers[9].label),
        timeout=10,
    )
    assert (again.replaced, again.correct) == (True, True)

    accuracy = await monitoring.GetLiveAccuracy(monitoring_pb2.GetLiveAccuracyRequest(), timeout=10)
    version = {v.model_version: v for v in accuracy.versions}[answers[0].model_version]
    assert (version.labelled, version.correct) == (10, 7)
    assert version.accuracy == pytest.approx(0.7)
    assert sum(p.labelled for p in accuracy.over_time) == 10
    assert sum(p.correct for p in accuracy.over_time) == 7


@pytest.mark.parametrize(
    ("prediction_id", "label", "code", "words"),
    [
        ("not-an-id", "setosa", grpc.StatusCode.INVALID_ARGUMENT, "is not a prediction id"),
        ("0123456789abcdef01234567", "setosa", grpc.StatusCode.INVALID_ARGUMENT, "is not a prediction id"),
        ("0123456789abcdef01234567-0", "setosa", grpc.StatusCode.NOT_FOUND, "no logged prediction"),
        ("beyond its page", "setosa", grpc.StatusCode.NOT_FOUND, "no logged prediction"),
        (None, "tomato", grpc.StatusCode.INVALID_ARGUMENT, "is not a class of the model"),
        (None, "", grpc.StatusCode.INVALID_ARGUMENT, "label must not be empty"),
    ],
)
async def test_bad_feedback_is_refused_with_a_clear_status(
    backend_with_model: RunningBackend,
    prediction_id: str | None,
    label: str,
    code: grpc.StatusCode,
    words: str,
) -> None:
    if prediction_id in (None, "beyond its page"):
        answer = await backend_with_model.predictions.Predict(request(np.random.default_rng(2)), timeout=20)
        page, _, index = answer.prediction_id.rpartition("-")
        prediction_id = answer.prediction_id if prediction_id is None else f"{page}-{int(index) + 1000}"
    with pytest.raises(aio.AioRpcError) as caught:
        await backend_with_model.monitoring.RecordFeedback(
            monitoring_pb2.RecordFeedbackRequest(prediction_id=prediction_id, label=label), timeout=10
        )
    assert caught.value.code() == code
    assert words in (caught.value.details() or "")


async def test_predict_batch_is_summarised_and_counted_not_stored_row_by_row(
    backend_with_model: RunningBackend, store: Any
) -> None:
    rows = np.random.default_rng(3).uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(30_000, 4))

    async def chunks() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
        for part in np.array_split(rows, 3):
            yield wire.bulk_request({n: part[:, j] for j, n in enumerate(IRIS)})

    answered = [a async for a in backend_with_model.predictions.PredictBatch(chunks(), timeout=60)]
    assert sum(len(a.label_indices) for a in answered) == 30_000

    async def counted() -> bool:
        counts = await backend_with_model.monitoring.GetPredictionCounts(
            monitoring_pb2.GetPredictionCountsRequest(), timeout=10
        )
        return sum(p.bulk_rows for p in counts.points) == 30_000

    await eventually(counted, "30,000 bulk rows counted")
    assert await store[PREDICTIONS].count_documents({}) == 0
    buckets = await store[BUCKETS].find({"source": "bulk"}).to_list()
    assert sum(b["served"] for b in buckets) == 30_000
    assert all(b["rows"] <= b["served"] for b in buckets)


async def test_with_mongodb_down_predictions_succeed_drops_are_counted_and_logging_resumes(
    private_mongo: NxServer, model_service: ModelService, mongodb_database: str
) -> None:
    async with backend_in_front_of(model_service.url, private_mongo.uri, mongodb_database) as backend:
        rng = np.random.default_rng(4)
        await backend.wait_for_status(PREDICTION_SERVICE, "SERVING")
        # The caller was signed in before the outage: a process keeps the last state it read of a
        # user through one (backend.auth.user_states), but refuses a user it never read.
        await backend.predictions.GetModel(predictions_pb2.GetModelRequest(), timeout=10)
        await asyncio.to_thread(private_mongo.stop)
        await backend.wait_for_status(FRUIT_SERVICE, "NOT_SERVING")
        for _ in range(20):
            answer = await backend.predictions.Predict(request(rng), timeout=10)
            assert answer.label in CLASSES

        async def dropped() -> bool:
            status = await backend.monitoring.GetMonitoringStatus(
                monitoring_pb2.GetMonitoringStatusRequest(), timeout=5
            )
            return status.dropped == 20 and status.HasField("last_dropped_at")

        await eventually(dropped, "20 dropped records")

        await asyncio.to_thread(private_mongo.start)
        await backend.wait_for_status(FRUIT_SERVICE, "SERVING")
        answers = [await backend.predictions.Predict(request(rng), timeout=10) for _ in range(5)]
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(private_mongo.uri)
        try:
            log = client[mongodb_database][PREDICTIONS]

            async def resumed() -> bool:
                return len(await logged(log)) == 5

            await eventually(resumed, "logging to resume")
            assert set(await logged(log)) == {a.prediction_id for a in answers}
        finally:
            await client.close()
