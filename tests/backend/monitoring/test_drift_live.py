"""Drift end to end: traffic from scripts/traffic.py through a real backend and `bentoml serve`.

The reference is the summary train.py stored with the served version; the windows are what the
backend logged and summarised. Traffic runs with one caller and a fixed seed, so the rows are the
same on every run.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from fruitstack.v1 import monitoring_pb2, predictions_pb2
from grpc import aio

from scripts.traffic import run_traffic
from tests.fixtures.backend import TEST_ADMIN, RunningBackend
from tests.fixtures.model_service import ModelService

SHIFTED = "petal_length_cm"
IRIS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


async def report(backend: RunningBackend, last: int) -> monitoring_pb2.DriftReport:
    request = monitoring_pb2.GetDriftReportRequest(last_predictions=last)
    return (await backend.monitoring.GetDriftReport(request, timeout=20)).report


async def wait_for_window(backend: RunningBackend, rows: int) -> monitoring_pb2.DriftReport:
    deadline = time.monotonic() + 30
    while (current := await report(backend, rows)).window_size < rows:
        assert time.monotonic() < deadline, f"the window holds {current.window_size} of {rows} rows"
        await asyncio.sleep(0.2)
    return current


async def test_traffic_like_the_training_data_shows_no_drift_on_repeated_windows(
    backend_with_model: RunningBackend,
) -> None:
    verdicts = []
    for seed in range(3):
        sent = await run_traffic(
            backend_with_model.target, count=400, rate=0, concurrency=1, seed=seed, login=TEST_ADMIN
        )
        assert sent.answered == 400
        current = await wait_for_window(backend_with_model, 400 * (seed + 1))
        verdicts.append(current)
    for current in verdicts:
        assert current.reference_size == 112  # iris, 25% held out
        assert {f.feature for f in current.features} == {
            "sepal_length_cm",
            "sepal_width_cm",
            "petal_length_cm",
            "petal_width_cm",
        }
        assert all(f.threshold > 0 for f in current.features)
        assert current.alpha == pytest.approx(0.01)
    # Three reports at a false-alarm rate of 1% each: none may say drift with these fixed rows.
    assert [r.drift for r in verdicts] == [False, False, False], [
        [(f.feature, f.statistic, f.threshold) for f in r.features] for r in verdicts
    ]


async def test_a_shift_of_one_feature_is_flagged_on_it_alone_and_recorded_as_a_drift_event(
    backend_with_model: RunningBackend,
) -> None:
    sent = await run_traffic(
        backend_with_model.target,
        count=600,
        rate=0,
        concurrency=1,
        seed=7,
        shift={SHIFTED: 2.5},
        login=TEST_ADMIN,
    )
    assert sent.answered == 600
    current = await wait_for_window(backend_with_model, 600)
    verdicts = {f.feature: f.drift for f in current.features}
    assert verdicts == {
        "sepal_length_cm": False,
        "sepal_width_cm": False,
        "petal_length_cm": True,
        "petal_width_cm": False,
    }
    shifted = next(f for f in current.features if f.feature == SHIFTED)
    assert shifted.statistic > shifted.threshold
    assert shifted.window_size == 600
    assert len(shifted.window.fractions) == len(shifted.window.edges) - 1
    assert current.drift

    # The periodic check (every second in tests) turns to drift and records one event.
    deadline = time.monotonic() + 30
    while True:
        status = await backend_with_model.monitoring.GetMonitoringStatus(
            monitoring_pb2.GetMonitoringStatusRequest(), timeout=10
        )
        if status.drift_events:
            break
        assert time.monotonic() < deadline, "no drift event was recorded"
        await asyncio.sleep(0.5)
    assert SHIFTED in status.drift_events[0].drifted
    assert status.drift_events[0].score > 1
    assert status.recent_checks[0].drift


async def test_a_time_range_window_and_bad_windows(backend_with_model: RunningBackend) -> None:
    await run_traffic(backend_with_model.target, count=100, rate=0, concurrency=1, seed=3, login=TEST_ADMIN)
    await wait_for_window(backend_with_model, 100)
    request = monitoring_pb2.GetDriftReportRequest()
    request.time_range.start.GetCurrentTime()
    request.time_range.start.seconds -= 600
    request.time_range.end.GetCurrentTime()
    ranged = (await backend_with_model.monitoring.GetDriftReport(request, timeout=20)).report
    assert ranged.window_size == 100

    for bad in (
        monitoring_pb2.GetDriftReportRequest(last_predictions=-5),
        monitoring_pb2.GetDriftReportRequest(
            time_range=monitoring_pb2.TimeRange(end=request.time_range.start, start=request.time_range.end)
        ),
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await backend_with_model.monitoring.GetDriftReport(bad, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_report_for_an_earlier_version_compares_its_own_inputs_with_its_own_training_data(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    backend = backend_with_private_model
    old = private_model_service.version
    await run_traffic(backend.target, count=60, rate=0, concurrency=1, seed=5, login=TEST_ADMIN)
    await wait_for_window(backend, 60)
    # A new champion of another dataset (so other features and another reference), served from now on.
    new = await asyncio.to_thread(private_model_service.train, dataset="wine", seed=7)
    await backend.predictions.UpdateModel(predictions_pb2.UpdateModelRequest(), timeout=60)
    await run_traffic(backend.target, count=25, rate=0, concurrency=1, seed=6, login=TEST_ADMIN)
    served = await wait_for_window(backend, 25)
    assert (served.model_version, served.window_size) == (new, 25)

    request = monitoring_pb2.GetDriftReportRequest(last_predictions=1000, model_version=old)
    earlier = (await backend.monitoring.GetDriftReport(request, timeout=30)).report
    assert (earlier.model_version, earlier.window_size) == (old, 60)
    assert [f.feature for f in earlier.features] == IRIS  # its own features and training rows
    assert earlier.reference_size != served.reference_size
    assert SHIFTED not in [f.feature for f in served.features]
    assert not earlier.drift

    for version, code in (("99", grpc.StatusCode.NOT_FOUND), ("v1", grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(aio.AioRpcError) as caught:
            await backend.monitoring.GetDriftReport(
                monitoring_pb2.GetDriftReportRequest(model_version=version), timeout=30
            )
        assert caught.value.code() == code, caught.value.details()
