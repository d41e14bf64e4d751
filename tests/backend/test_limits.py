"""What one caller can make the server hold, enforced on a real backend on a free port.

Request sizes per method (refused before the policy, the handler or a password hash), the cap on
calls in flight, PredictBatch's rows and longest run, GetDriftReport's largest windows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import numpy as np
import pytest
from fruitstack.v1 import auth_pb2, fruits_pb2, monitoring_pb2, predictions_pb2
from grpc import aio

from backend.config import Settings
from backend.limits import PREDICT, PREDICT_BATCH, CallLimits
from backend.prediction import wire
from tests.fixtures.backend import TEST_ADMIN, RunningBackend, backend_settings, running_backend
from tests.fixtures.model_service import ModelService
from tests.support import read_into

LOGIN = "/fruitstack.v1.AuthService/Login"
IRIS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
SMALL_LIMIT = Settings.model_fields["max_request_bytes"].default
# An unknown field (number 15, length-delimited): every parser skips it, so a padded request means
# exactly what the unpadded one does.
PADDING_TAG = bytes([15 << 3 | 2])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def padded(message: Any, total: int) -> bytes:
    """message serialized and padded with an unknown field to exactly `total` bytes."""
    body: bytes = message.SerializeToString()
    pad = total - len(body) - len(PADDING_TAG) - 1
    while len(body) + len(PADDING_TAG) + len(_varint(pad)) + pad > total:
        pad -= 1
    data = body + PADDING_TAG + _varint(pad) + b"\0" * pad
    assert len(data) == total, (len(data), total)
    return data


def login_call(backend: RunningBackend) -> aio.UnaryUnaryMultiCallable:  # type: ignore[type-arg]
    # Raw bytes out, so that a test decides each request's exact size.
    return backend.plain_channel.unary_unary(
        LOGIN, request_serializer=None, response_deserializer=auth_pb2.LoginResponse.FromString
    )


@pytest.fixture
async def backend(mongodb_uri: str, mongodb_database: str) -> AsyncIterator[RunningBackend]:
    """A backend with small limits, and one failed sign-in per user before they are refused."""
    settings = backend_settings(
        mongodb_uri=mongodb_uri,
        mongodb_database=mongodb_database,
        login_free_attempts=1,
        predict_batch_max_rows=10,
        predict_batch_max_s=0.5,
        drift_max_window_predictions=5000,
        drift_max_window_s=3600,
    )
    async with running_backend(settings) as running:
        await running.wait_for_status("fruitstack.v1.AuthService", "SERVING")
        yield running


def test_each_method_gets_its_limit_and_grpc_accepts_the_largest() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    limits = CallLimits.from_settings(settings)
    assert limits.request_bytes_for(LOGIN) == settings.max_request_bytes == 8 * 1024
    assert limits.request_bytes_for("/fruitstack.v1.FruitService/AddFruit") == 8 * 1024
    assert limits.request_bytes_for(PREDICT) == settings.max_predict_request_bytes == 64 * 1024
    assert limits.request_bytes_for(PREDICT_BATCH) == settings.max_batch_request_bytes == 64 * 1024 * 1024
    assert limits.largest_request_bytes == 64 * 1024 * 1024


async def test_a_10_mb_login_is_refused_before_its_handler_runs(
    backend: RunningBackend, caplog: pytest.LogCaptureFixture
) -> None:
    username, password = TEST_ADMIN
    right = auth_pb2.LoginRequest(username=username, password=password)
    wrong = auth_pb2.LoginRequest(username=username, password="not-the-password")
    with caplog.at_level(logging.INFO):
        for request in (right, wrong):
            with pytest.raises(aio.AioRpcError) as caught:
                await login_call(backend)(padded(request, 10 * 1024 * 1024), timeout=30)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert caught.value.details() == (
                f"fruitstack.v1.AuthService/Login accepts requests of at most {SMALL_LIMIT:,} bytes; "
                "this one has 10,485,760"
            )
    # Had the handler run, the right password would have signed in, and the wrong one would have
    # used up the only failed attempt (LOGIN_FREE_ATTEMPTS=1), so that this sign-in would be refused.
    assert "failed login" not in caplog.text
    signed_in = await login_call(backend)(right.SerializeToString(), timeout=30)
    assert signed_in.user.username == username
    # The control: the same wrong password, small, does use it up.
    with pytest.raises(aio.AioRpcError) as caught:
        await login_call(backend)(wrong.SerializeToString(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(aio.AioRpcError) as caught:
        await login_call(backend)(right.SerializeToString(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many failed sign-ins" in (caught.value.details() or "")


async def test_a_login_at_its_limit_is_answered_and_one_byte_more_is_refused(backend: RunningBackend) -> None:
    request = auth_pb2.LoginRequest(username=TEST_ADMIN[0], password=TEST_ADMIN[1])
    signed_in = await login_call(backend)(padded(request, SMALL_LIMIT), timeout=30)
    assert signed_in.access_token
    with pytest.raises(aio.AioRpcError) as caught:
        await login_call(backend)(padded(request, SMALL_LIMIT + 1), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"at most {SMALL_LIMIT:,} bytes; this one has {SMALL_LIMIT + 1:,}" in (
        caught.value.details() or ""
    )


async def test_the_largest_valid_login_fits_its_limit(backend: RunningBackend) -> None:
    # A 64-character name and a 1024-character password of 4-byte characters reach the handler
    # (which answers that the password is wrong), not the size limit.
    request = auth_pb2.LoginRequest(username="a" * 64, password="\U0001f34e" * 1024)
    assert len(request.SerializeToString()) <= SMALL_LIMIT
    with pytest.raises(aio.AioRpcError) as caught:
        await login_call(backend)(request.SerializeToString(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_oversized_request_to_a_method_that_needs_a_token_is_refused_the_same_way(
    backend: RunningBackend,
) -> None:
    add = backend.plain_channel.unary_unary(
        "/fruitstack.v1.FruitService/AddFruit", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await add(padded(fruits_pb2.AddFruitRequest(name="kiwi"), SMALL_LIMIT + 1), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "AddFruit accepts requests of at most" in (caught.value.details() or "")


async def _list_fruits_until(
    backend: RunningBackend, *, refused: bool, holders: list[Any] | None = None
) -> aio.AioRpcError | None:
    """Call ListFruits until it is refused (or answered).

    holders: calls that should hold the slots. A holder that arrived while a ListFruits held a slot
    was refused itself: it is replaced by a new one, so that both slots end up held by holders.
    """
    for _ in range(200):
        for i, holder in enumerate(holders or []):
            if holder.reader.done():
                failure = holder.reader.exception()
                assert isinstance(failure, aio.AioRpcError), failure
                assert failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, failure
                holders[i] = _Holder(backend)  # type: ignore[index]
        try:
            await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=10)
        except aio.AioRpcError as exc:
            if refused or exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                return exc
        else:
            if not refused:
                return None
        await asyncio.sleep(0.05)
    raise AssertionError(f"ListFruits was never {'refused' if refused else 'answered'}")


class _Holder:
    """A PredictBatch stream whose client sends nothing: in flight until cancelled."""

    def __init__(self, backend: RunningBackend) -> None:
        self.stream = backend.predictions.PredictBatch(timeout=60)  # type: ignore[call-arg]
        # A read makes the client start the call (it sends nothing before).
        self.reader = asyncio.ensure_future(self.stream.read())

    async def close(self) -> None:
        self.stream.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def test_a_call_beyond_the_cap_on_calls_in_flight_is_resource_exhausted(
    mongodb_uri: str, mongodb_database: str
) -> None:
    settings = backend_settings(
        mongodb_uri=mongodb_uri, mongodb_database=mongodb_database, max_concurrent_calls=2
    )
    async with running_backend(settings) as backend:
        holders = [_Holder(backend) for _ in range(2)]
        try:
            refusal = await _list_fruits_until(backend, refused=True, holders=holders)
            assert refusal is not None
            assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refusal
            assert refusal.details() == (
                "the server is busy: it handles at most 2 calls at once and has that many in flight; "
                "retry shortly"
            )
            # Health checks are not counted (a probe must see a busy server as alive).
            assert await backend.status("") == "SERVING"
        finally:
            for holder in holders:
                await holder.close()
        # The slots come back when the calls end.
        assert await _list_fruits_until(backend, refused=False) is None


async def test_predict_batch_past_its_row_cap_is_invalid_argument_before_scoring(
    backend: RunningBackend,
) -> None:
    # No model service behind this backend: the refusal comes before any row is scored.
    rows = np.ones((11, len(IRIS)))

    async def chunks() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
        yield wire.bulk_request({name: rows[:, j] for j, name in enumerate(IRIS)})

    with pytest.raises(aio.AioRpcError) as caught:
        await read_into([], backend.predictions.PredictBatch(chunks(), timeout=30))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == (
        "PredictBatch takes at most 10 rows per call and this stream has sent 11; "
        "send the rest in another call"
    )


async def test_predict_batch_ends_at_the_servers_longest_run_whatever_the_clients_deadline(
    backend: RunningBackend,
) -> None:
    # The client sends nothing and waits.
    stream = backend.predictions.PredictBatch(timeout=60)  # type: ignore[call-arg]
    with pytest.raises(aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.details() == (
        "PredictBatch ran for the server's maximum of 0.5 s per call; send the rows over several calls"
    )


async def test_the_row_cap_counts_the_whole_stream(
    model_service: ModelService, mongodb_uri: str, mongodb_database: str
) -> None:
    settings = backend_settings(
        mongodb_uri=mongodb_uri,
        mongodb_database=mongodb_database,
        model_url=model_service.url,
        predict_batch_max_rows=10,
    )
    rows = np.tile([5.9, 3.0, 5.1, 1.8], (5, 1))
    chunk = wire.bulk_request({name: rows[:, j] for j, name in enumerate(IRIS)})

    async def chunks(n: int) -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
        for _ in range(n):
            yield chunk

    async with running_backend(settings) as backend:
        await backend.wait_for_status("fruitstack.v1.PredictionService", "SERVING", timeout_s=60)
        answered = [r async for r in backend.predictions.PredictBatch(chunks(2), timeout=30)]
        assert [len(r.label_indices) for r in answered] == [5, 5]
        seen: list[predictions_pb2.PredictBatchResponse] = []
        with pytest.raises(aio.AioRpcError) as caught:
            await read_into(seen, backend.predictions.PredictBatch(chunks(3), timeout=30))
        assert [len(r.label_indices) for r in seen] == [5, 5]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 10 rows per call and this stream has sent 15" in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (
            {"last_predictions": 5001},
            "last_predictions must be 1 to 5,000 (the server's largest drift window)",
        ),
        ({"span": timedelta(hours=2)}, "time_range covers 7,200 s; a drift report covers at most 3,600 s"),
        ({"end_only": True}, "time_range.start is required: a drift report covers at most 3,600 s"),
    ],
)
async def test_a_drift_report_past_its_window_cap_is_invalid_argument(
    backend: RunningBackend, window: dict[str, Any], expected: str
) -> None:
    request = monitoring_pb2.GetDriftReportRequest()
    now = datetime.now(UTC).replace(microsecond=0)
    if "last_predictions" in window:
        request.last_predictions = window["last_predictions"]
    elif "span" in window:
        request.time_range.start.FromDatetime(now - window["span"])
        request.time_range.end.FromDatetime(now)
    else:
        request.time_range.end.FromDatetime(now)
    with pytest.raises(aio.AioRpcError) as caught:
        await backend.monitoring.GetDriftReport(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(expected)


async def test_a_drift_report_within_its_caps_gets_past_them(backend: RunningBackend) -> None:
    # No model service behind this backend: a request within the caps gets as far as asking it.
    request = monitoring_pb2.GetDriftReportRequest(last_predictions=5000)
    with pytest.raises(aio.AioRpcError) as caught:
        await backend.monitoring.GetDriftReport(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
