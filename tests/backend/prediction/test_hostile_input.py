"""PredictionService under hostile input, through a real backend and a real `bentoml serve`.

Extreme but finite values get a clear INVALID_ARGUMENT naming the feature (and the stream's row in
PredictBatch) and cost nobody else their answer; messages stay small however large the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
import numpy as np
import pytest
from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from grpc import aio

from backend.prediction import wire
from tests.fixtures.backend import RunningBackend
from tests.support import read_into

Stub: TypeAlias = "predictions_pb2_grpc.PredictionServiceAsyncStub"

IRIS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
GOOD = [5.9, 3.0, 5.1, 1.8]
OVERFLOWING = [1e308, -1e308, 5.1, 1.8]


@pytest.fixture
def stub(backend_with_model: RunningBackend) -> Stub:
    return predictions_pb2_grpc.PredictionServiceStub(backend_with_model.channel)


def request(row: list[float]) -> predictions_pb2.PredictRequest:
    return predictions_pb2.PredictRequest(features=dict(zip(IRIS, row, strict=True)))


async def test_an_overflowing_prediction_is_invalid_argument_and_its_batch_mates_are_answered(
    stub: Stub,
) -> None:
    # Sent together, so that the coalescer puts the bad row in a batch with good ones.
    calls = [stub.Predict(request(OVERFLOWING if i == 10 else GOOD), timeout=20) for i in range(21)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    bad = results.pop(10)
    assert isinstance(bad, aio.AioRpcError)
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'sepal_length_cm' = 1e+308" in (bad.details() or "")
    assert "training range" in (bad.details() or "")
    for result in results:
        assert isinstance(result, predictions_pb2.PredictResponse), result
        assert abs(sum(result.probabilities.values()) - 1) < 1e-9


async def test_an_overflowing_row_in_predict_batch_is_named_by_its_place_in_the_stream(stub: Stub) -> None:
    chunk = np.asarray([GOOD] * 100)

    async def chunks() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
        yield wire.bulk_request({n: chunk[:, j] for j, n in enumerate(IRIS)})
        second = chunk.copy()
        second[37] = OVERFLOWING
        yield wire.bulk_request({n: second[:, j] for j, n in enumerate(IRIS)})

    answers: list[predictions_pb2.PredictBatchResponse] = []
    with pytest.raises(aio.AioRpcError) as caught:
        await read_into(answers, stub.PredictBatch(chunks(), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "row 137:" in (caught.value.details() or "")
    # The first chunk was a real answer: no NaN ever leaves the backend.
    assert len(answers) == 1
    probabilities = np.column_stack([wire.array(c) for c in answers[0].probabilities])
    assert np.isfinite(probabilities).all()


async def test_a_non_finite_value_in_predict_batch_is_named_by_its_place_in_the_stream(stub: Stub) -> None:
    chunk = np.asarray([GOOD] * 50)

    async def chunks() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
        yield wire.bulk_request({n: chunk[:, j] for j, n in enumerate(IRIS)})
        second = chunk.copy()
        second[3, 2] = np.nan
        yield wire.bulk_request({n: second[:, j] for j, n in enumerate(IRIS)})

    with pytest.raises(aio.AioRpcError) as caught:
        await read_into([], stub.PredictBatch(chunks(), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'petal_length_cm' must be a finite number, got nan in row 53" in (caught.value.details() or "")


async def test_thousands_of_unknown_features_are_a_short_invalid_argument_and_a_short_log_line(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    # 1000 of them: 51 KB, within Predict's request limit (64 KiB; 5000 would be refused for size).
    features = {f"unknown_feature_{i:05d}_with_a_long_name": 1.0 for i in range(1000)}
    with caplog.at_level(logging.INFO, logger="backend"), pytest.raises(aio.AioRpcError) as caught:
        await stub.Predict(predictions_pb2.PredictRequest(features=features), timeout=10)
    # Before: a message that grew with the names (89 KB for 5000), which clients refuse as
    # RESOURCE_EXHAUSTED (metadata over 8 KB).
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert len(details) < 1000, len(details)
    assert "and 995 more" in details
    assert "missing feature(s) 'sepal_length_cm'" in details
    backend_lines = [r.getMessage() for r in caplog.records if r.name.startswith("backend")]
    assert backend_lines
    assert max(len(line) for line in backend_lines) < 1500
