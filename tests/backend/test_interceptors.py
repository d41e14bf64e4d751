"""Exception-to-status mapping: the table, and the interceptor on a real server with stand-in servicers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from fruitstack.v1 import fruits_pb2, fruits_pb2_grpc, predictions_pb2, predictions_pb2_grpc
from grpc import aio

from backend import exceptions
from backend.burst_log import BurstLog
from backend.interceptors import ErrorMappingInterceptor, status_code_for
from backend.messages import MAX_MESSAGE_CHARS


class _SubclassOfNotFound(exceptions.NotFound):
    pass


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (exceptions.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (exceptions.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (exceptions.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (exceptions.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
        (exceptions.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
        (exceptions.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
        (exceptions.ResourceExhausted("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (exceptions.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (exceptions.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (exceptions.MalformedRequest("x"), grpc.StatusCode.INTERNAL),
        (_SubclassOfNotFound("x"), grpc.StatusCode.NOT_FOUND),
        (exceptions.FruitstackError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_exception_has_its_status(exc: exceptions.FruitstackError, code: grpc.StatusCode) -> None:
    assert status_code_for(exc) == code


class _BrokenFruits(fruits_pb2_grpc.FruitServiceServicer):
    async def AddFruit(
        self, request: fruits_pb2.AddFruitRequest, context: aio.ServicerContext[Any, Any]
    ) -> fruits_pb2.AddFruitResponse:
        raise RuntimeError("secret internals")

    async def DeleteFruit(
        self, request: fruits_pb2.DeleteFruitRequest, context: aio.ServicerContext[Any, Any]
    ) -> fruits_pb2.DeleteFruitResponse:
        if request.id == "long":
            raise exceptions.InvalidArgument("x" * 100_000)
        raise exceptions.NotFound(f"no fruit with id {request.id!r}")


class _HalfBulk(predictions_pb2_grpc.PredictionServiceServicer):
    async def PredictBatch(
        self,
        request_iterator: AsyncIterator[predictions_pb2.PredictBatchRequest],
        context: aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[predictions_pb2.PredictBatchResponse]:
        yield predictions_pb2.PredictBatchResponse(model_version="v1")
        raise exceptions.InvalidArgument("chunk 2 has a column of the wrong length")


@pytest.fixture
async def channel() -> AsyncIterator[aio.Channel]:
    server = aio.server(interceptors=[ErrorMappingInterceptor()])
    # The stand-ins implement only the methods these tests call.
    fruits_pb2_grpc.add_FruitServiceServicer_to_server(_BrokenFruits(), server)  # type: ignore[abstract]
    predictions_pb2_grpc.add_PredictionServiceServicer_to_server(_HalfBulk(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(0)


async def test_domain_errors_keep_their_message(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await fruits_pb2_grpc.FruitServiceStub(channel).DeleteFruit(fruits_pb2.DeleteFruitRequest(id="x"))
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.NOT_FOUND, "no fruit with id 'x'")


async def test_unexpected_errors_are_internal_without_details(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await fruits_pb2_grpc.FruitServiceStub(channel).AddFruit(fruits_pb2.AddFruitRequest(name="x"))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (info.value.details() or "")


async def test_streaming_errors_end_the_stream_with_their_status(channel: aio.Channel) -> None:
    call = predictions_pb2_grpc.PredictionServiceStub(channel).PredictBatch(
        iter([predictions_pb2.PredictBatchRequest()])
    )
    first = await call.read()
    assert isinstance(first, predictions_pb2.PredictBatchResponse)
    assert first.model_version == "v1"
    with pytest.raises(aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "chunk 2 has a column of the wrong length"


async def test_a_huge_message_is_cut_to_a_bounded_length(channel: aio.Channel) -> None:
    """A last bound on every message: gRPC clients refuse status metadata beyond 8 KB."""
    with pytest.raises(aio.AioRpcError) as info:
        await fruits_pb2_grpc.FruitServiceStub(channel).DeleteFruit(fruits_pb2.DeleteFruitRequest(id="long"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert details.startswith("xxx")
    assert len(details) == MAX_MESSAGE_CHARS + len("...")


def test_a_burst_log_warns_once_per_quiet_period_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    burst = BurstLog(logging.getLogger("test.burst"), quiet_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.burst"):
        for _ in range(500):
            burst.warning("garbage")
        now[0] = 61.0
        burst.warning("garbage again")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("garbage; further ones in the next 60s are counted")
    assert "(499 more like it since the last warning)" in messages[1]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)
