"""How the prediction log gathers records into pages (an isolated unit: a fake repository, no MongoDB)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backend.exceptions import Unavailable
from backend.monitoring.prediction_log import PredictionLog
from backend.monitoring.repository import PredictionRef, unpack

FEATURES = {"a": 1.0, "b": 2.0}
PROBABILITIES = {"x": 0.75, "y": 0.25}


class FakeRepository:
    def __init__(self) -> None:
        self.pages: list[dict[str, Any]] = []
        self.buckets: list[dict[str, Any]] = []
        self.down = False

    async def insert_page(self, doc: dict[str, Any], *, budget_s: float) -> None:
        if self.down:
            raise Unavailable("MongoDB is down")
        self.pages.append(doc)

    async def insert_bucket(self, doc: dict[str, Any], *, budget_s: float) -> None:
        self.buckets.append(doc)


def make_log(repository: FakeRepository, **kwargs: Any) -> PredictionLog:
    return PredictionLog(repository, **kwargs)  # type: ignore[arg-type]


def record(log: PredictionLog, version: str = "1", **features: float) -> str:
    return log.record(
        features=features or FEATURES,
        label="x",
        probabilities=PROBABILITIES,
        model_version=version,
        latency_ms=1,
    )


def test_a_prediction_id_names_its_page_and_place() -> None:
    ref = PredictionRef.parse("0123456789abcdef01234567-42")
    assert ref is not None
    assert (str(ref.page), ref.index) == ("0123456789abcdef01234567", 42)
    assert str(ref) == "0123456789abcdef01234567-42"
    for bad in ("0123456789abcdef01234567", "0123456789abcdef01234567-", "-1", "x" * 24 + "-1", "", "a-b-c"):
        assert PredictionRef.parse(bad) is None


async def test_records_fill_pages_of_page_size_and_unpack_as_they_were_recorded() -> None:
    repository = FakeRepository()
    log = make_log(repository, page_size=3, linger_s=60)
    ids = [record(log, a=float(i), b=-float(i)) for i in range(7)]
    task = asyncio.create_task(log.run())
    try:
        await asyncio.sleep(0.05)  # two full pages are written at once; the seventh record lingers
        assert [p["n"] for p in repository.pages] == [3, 3]
        await log.close()
    finally:
        task.cancel()
    assert [p["n"] for p in repository.pages] == [3, 3, 1]
    records = dict(r for page in repository.pages for r in unpack(page))
    assert list(records) == ids
    assert [r["features"] for r in records.values()] == [{"a": float(i), "b": -float(i)} for i in range(7)]
    assert {r["label"] for r in records.values()} == {"x"}
    assert all(r["probabilities"] == PROBABILITIES and r["latency_ms"] == 1 for r in records.values())
    assert log.stats().logged == 7
    assert sum(b["served"] for b in repository.buckets) == 7


async def test_a_page_is_written_once_it_has_lingered() -> None:
    repository = FakeRepository()
    log = make_log(repository, page_size=100, linger_s=0.05)
    task = asyncio.create_task(log.run())
    try:
        await asyncio.sleep(0.05)  # the writer idles (nothing open) before the first record comes
        record(log)
        await asyncio.sleep(0.3)
        assert [p["n"] for p in repository.pages] == [1]
        assert log.stats().queued == 0
    finally:
        task.cancel()


async def test_each_model_version_and_feature_set_has_its_own_page() -> None:
    repository = FakeRepository()
    log = make_log(repository, page_size=100, linger_s=60)
    first, second = record(log, "1"), record(log, "2")
    third = record(log, "1", a=1.0, c=3.0)  # other features than the open page's: a new page
    await log.close()
    pages = {str(p["_id"]): p for p in repository.pages}
    assert len(pages) == 3
    by_ref = {ref: page["model_version"] for page in pages.values() for ref, _ in unpack(page)}
    assert by_ref == {first: "1", second: "2", third: "1"}


@pytest.mark.parametrize("down", [False, True])
async def test_beyond_the_queue_or_with_mongodb_down_records_are_dropped_and_counted(down: bool) -> None:
    repository = FakeRepository()
    repository.down = down
    log = make_log(repository, page_size=100, linger_s=60, queue_size=5)
    for _ in range(8):
        record(log)
    assert (log.stats().queued, log.stats().dropped) == (5, 3)
    await log.close()
    stats = log.stats()
    assert (stats.logged, stats.dropped, stats.queued) == ((0, 8, 0) if down else (5, 3, 0))
