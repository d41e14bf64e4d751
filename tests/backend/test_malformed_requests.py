"""Bytes that are not the method's protobuf message: a plain INTERNAL, one warning per burst, no crash.

Sent as raw bytes over a real channel to the real backend (each method's own deserializer sees them).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from fruitstack.v1 import fruits_pb2, predictions_pb2
from grpc import aio

from backend.health_watcher import OVERALL
from backend.prediction import wire
from tests.fixtures.backend import RunningBackend
from tests.support import read_into

NOT_PROTOBUF = b"\xff\xff\xff\xff"
BAD_UTF8_NAME = b"\x0a\x02\xff\xfe"  # AddFruitRequest.name = two bytes that are not UTF-8


def raw_unary(channel: aio.Channel, method: str) -> aio.UnaryUnaryMultiCallable:  # type: ignore[type-arg]
    # Identity (de)serializers: the bytes go out exactly as given.
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("/fruitstack.v1.FruitService/AddFruit", NOT_PROTOBUF),
        ("/fruitstack.v1.FruitService/AddFruit", BAD_UTF8_NAME),
        ("/fruitstack.v1.FruitService/ListFruits", NOT_PROTOBUF),
        ("/fruitstack.v1.PredictionService/Predict", NOT_PROTOBUF),
        ("/grpc.health.v1.Health/Check", NOT_PROTOBUF),
    ],
)
async def test_an_unparsable_request_is_internal_with_a_plain_message(
    backend: RunningBackend, method: str, body: bytes
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await raw_unary(backend.channel, method)(body, timeout=5)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    details = caught.value.details() or ""
    assert details.startswith("the request could not be parsed")
    assert "DecodeError" not in details
    assert "Unexpected" not in details


async def test_a_flood_of_garbage_logs_one_warning_and_the_server_stays_healthy(
    backend: RunningBackend, caplog: pytest.LogCaptureFixture
) -> None:
    call = raw_unary(backend.channel, "/fruitstack.v1.FruitService/AddFruit")
    with caplog.at_level(logging.INFO):
        for _ in range(200):
            with pytest.raises(aio.AioRpcError):
                await call(NOT_PROTOBUF, timeout=5)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].exc_info is None
    assert "could not be parsed" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Still serving, and a well-formed request works.
    assert await backend.status(OVERALL) == "SERVING"
    added = await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="kiwi"), timeout=5)
    assert added.fruit.name == "kiwi"


async def test_garbage_inside_a_predict_batch_stream_ends_it_with_internal_after_the_good_chunks(
    backend_with_model: RunningBackend,
) -> None:
    iris = {
        "sepal_length_cm": [5.9],
        "sepal_width_cm": [3.0],
        "petal_length_cm": [5.1],
        "petal_width_cm": [1.8],
    }
    good = wire.bulk_request(iris).SerializeToString()
    call = backend_with_model.channel.stream_stream(
        "/fruitstack.v1.PredictionService/PredictBatch", request_serializer=None, response_deserializer=None
    )

    async def requests() -> AsyncIterator[bytes]:
        yield good
        yield NOT_PROTOBUF

    answers: list[bytes] = []
    with pytest.raises(aio.AioRpcError) as caught:
        await read_into(answers, call(requests(), timeout=10))
    assert len(answers) == 1
    assert predictions_pb2.PredictBatchResponse.FromString(answers[0]).model_version
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert (caught.value.details() or "").startswith("the request could not be parsed")


async def test_garbage_as_the_first_predict_batch_message_is_internal(
    backend_with_model: RunningBackend,
) -> None:
    call = backend_with_model.channel.stream_stream(
        "/fruitstack.v1.PredictionService/PredictBatch", request_serializer=None, response_deserializer=None
    )

    async def requests() -> AsyncIterator[bytes]:
        yield NOT_PROTOBUF

    with pytest.raises(aio.AioRpcError) as caught:
        await read_into([], call(requests(), timeout=10))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert (caught.value.details() or "").startswith("the request could not be parsed")
