"""MonitoringService's handling of request fields, on a real backend (no model service needed)."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from fruitstack.v1 import monitoring_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from tests.fixtures.backend import RunningBackend

# Timestamps protobuf will not turn into a datetime (found by tests/fuzz: each was an INTERNAL crash).
NOT_TIMES = [
    Timestamp(nanos=1_000_000_000),
    Timestamp(nanos=-1),
    Timestamp(seconds=253402300800),  # 10000-01-01
    Timestamp(seconds=-(2**63)),
]


def ranges(not_a_time: Timestamp) -> list[monitoring_pb2.TimeRange]:
    return [monitoring_pb2.TimeRange(start=not_a_time), monitoring_pb2.TimeRange(end=not_a_time)]


@pytest.mark.parametrize("not_a_time", NOT_TIMES, ids=lambda t: f"{t.seconds}s{t.nanos}ns")
async def test_a_timestamp_that_is_not_a_time_is_invalid_argument_naming_the_field(
    backend: RunningBackend, not_a_time: Timestamp
) -> None:
    monitoring = backend.monitoring
    for time_range in ranges(not_a_time):
        calls: list[Awaitable[object]] = [
            monitoring.GetDriftReport(
                monitoring_pb2.GetDriftReportRequest(time_range=time_range), timeout=10
            ),
            monitoring.GetLiveAccuracy(
                monitoring_pb2.GetLiveAccuracyRequest(time_range=time_range), timeout=10
            ),
            monitoring.GetPredictionCounts(
                monitoring_pb2.GetPredictionCountsRequest(time_range=time_range), timeout=10
            ),
        ]
        side = "start" if time_range.HasField("start") else "end"
        for answer in calls:
            with pytest.raises(aio.AioRpcError) as caught:
                await answer
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details = caught.value.details() or ""
            assert details.startswith(f"time_range.{side} is not a valid time"), details
            assert "years 1 to 9999" in details


async def test_an_end_in_the_first_hour_of_year_one_without_a_start_is_invalid_argument(
    backend: RunningBackend,
) -> None:
    # Valid, but the default start (an hour before the end) is before year 1 (found by tests/fuzz).
    time_range = monitoring_pb2.TimeRange(end=Timestamp(seconds=-62135596800))
    monitoring = backend.monitoring
    calls: list[Awaitable[object]] = [
        monitoring.GetLiveAccuracy(monitoring_pb2.GetLiveAccuracyRequest(time_range=time_range), timeout=10),
        monitoring.GetPredictionCounts(
            monitoring_pb2.GetPredictionCountsRequest(time_range=time_range), timeout=10
        ),
    ]
    for answer in calls:
        with pytest.raises(aio.AioRpcError) as caught:
            await answer
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "give time_range.start" in (caught.value.details() or "")
