"""How drift reports are shared between identical requests (an isolated unit: fakes, no MongoDB).

The live behaviour of reports (their verdicts over real traffic) is in test_drift_live.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from backend.exceptions import Unavailable
from backend.monitoring.drift import Summary
from backend.monitoring.monitor import Monitor
from backend.monitoring.prediction_log import PredictionLog
from backend.prediction.schema import FeatureInfo, ModelInfo

FEATURES = ("a", "b")


def summary(rows: int, seed: int) -> Summary:
    generator = np.random.default_rng(seed)
    made = Summary()
    made.update({name: generator.normal(size=rows) for name in FEATURES}, ["x"] * rows)
    return made


class FakeRepository:
    """Counts reads of drift buckets; each holds 100 rows like the training data."""

    retention_s = 3600

    def __init__(self) -> None:
        self.reads: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_next = False

    async def buckets(self, **window: Any) -> list[dict[str, Any]]:
        self.reads.append(window)
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise Unavailable("MongoDB is down")
        now = datetime.now(UTC)
        bucket = {"start": now - timedelta(seconds=10), "end": now, **summary(100, len(self.reads)).to_doc()}
        return [bucket]


class FakePredictor:
    def __init__(self) -> None:
        self.info = ModelInfo(
            name="m",
            version="3",
            dataset="d",
            features=tuple(FeatureInfo(name, -3.0, 3.0, 0.0) for name in FEATURES),
            classes=("x", "y"),
            metrics={},
            trained_at=None,
            reference=summary(500, 0).to_doc(),
        )

    async def current_model(self, *, time_left: float | None = None) -> ModelInfo:
        return self.info


def make_monitor(repository: FakeRepository, *, cache_s: float) -> Monitor:
    return Monitor(
        repository=repository,  # type: ignore[arg-type]
        log=PredictionLog(repository),  # type: ignore[arg-type]
        predictor=FakePredictor(),  # type: ignore[arg-type]
        window_predictions=1000,
        alpha=0.01,
        check_interval_s=60,
        report_cache_s=cache_s,
    )


async def test_identical_requests_in_flight_share_one_read_and_one_report() -> None:
    repository = FakeRepository()
    monitor = make_monitor(repository, cache_s=60)
    repository.release.clear()  # the first read waits, so that all ten requests are in flight
    waiting = [asyncio.create_task(monitor.drift_report()) for _ in range(10)]
    await asyncio.sleep(0.01)
    repository.release.set()
    reports = await asyncio.gather(*waiting)
    assert len(repository.reads) == 1
    assert all(r is reports[0] for r in reports)
    assert reports[0].window_size == 100
    # Asked again, the same report; the default window is the same as asking for its size.
    assert await monitor.drift_report(last_predictions=1000) is reports[0]
    assert len(repository.reads) == 1


async def test_other_windows_are_other_reports() -> None:
    repository = FakeRepository()
    monitor = make_monitor(repository, cache_s=60)
    since = datetime.now(UTC) - timedelta(minutes=5)
    await monitor.drift_report()
    await monitor.drift_report(last_predictions=50)
    await monitor.drift_report(since=since)
    await monitor.drift_report(since=since, until=since + timedelta(minutes=1))
    await monitor.drift_report(since=since)
    assert [sorted(r) for r in repository.reads] == [
        ["model_version", "newest_rows"],
        ["model_version", "newest_rows"],
        ["model_version", "since", "until"],
        ["model_version", "since", "until"],
    ]
    assert [r.get("newest_rows") for r in repository.reads] == [1000, 50, None, None]


async def test_a_report_is_computed_again_once_it_is_older_than_the_setting() -> None:
    repository = FakeRepository()
    monitor = make_monitor(repository, cache_s=0.05)
    first = await monitor.drift_report()
    await asyncio.sleep(0.2)
    second = await monitor.drift_report()
    assert second is not first
    assert second.computed_at > first.computed_at
    assert len(repository.reads) == 2


async def test_a_failed_report_is_not_kept() -> None:
    repository = FakeRepository()
    monitor = make_monitor(repository, cache_s=60)
    repository.fail_next = True
    with pytest.raises(Unavailable):
        await monitor.drift_report()
    assert (await monitor.drift_report()).window_size == 100
    assert len(repository.reads) == 2


async def test_with_no_cache_every_request_reads() -> None:
    repository = FakeRepository()
    monitor = make_monitor(repository, cache_s=0)
    for _ in range(3):
        await monitor.drift_report()
    assert len(repository.reads) == 3
