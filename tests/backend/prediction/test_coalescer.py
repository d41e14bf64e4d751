"""Unit tests of the Coalescer with a fake batch sender (no network)."""

from __future__ import annotations

import asyncio

import pytest

from backend.exceptions import DeadlineExceeded, InvalidArgument, Unavailable
from backend.prediction.coalescer import Coalescer


class FakeModel:
    """Records each batch; each call waits until the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.fail_with: Exception | None = None

    async def send(self, rows: list[int], time_left: float | None) -> list[int | BaseException]:
        self.batches.append(rows)
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [InvalidArgument(f"bad row {r}") if r < 0 else r * 10 for r in rows]


async def test_lone_call_is_sent_at_once() -> None:
    model = FakeModel()
    model.release.set()
    coalescer: Coalescer[int, int] = Coalescer(model.send)
    assert await coalescer.submit(1) == 10
    assert model.batches == [[1]]


async def test_calls_arriving_while_a_batch_is_in_flight_leave_together_in_one_batch() -> None:
    model = FakeModel()
    coalescer: Coalescer[int, int] = Coalescer(model.send)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(coalescer.submit(n)) for n in range(2, 7)]
    await asyncio.sleep(0.01)
    assert model.batches == [[1]], "rows must wait while a batch is in flight"
    model.release.set()
    assert await first == 10
    assert await asyncio.gather(*queued) == [20, 30, 40, 50, 60]
    assert model.batches == [[1], [2, 3, 4, 5, 6]]


async def test_a_row_error_fails_only_that_caller() -> None:
    model = FakeModel()
    model.release.set()
    coalescer: Coalescer[int, int] = Coalescer(model.send)
    results = await asyncio.gather(coalescer.submit(1), coalescer.submit(-1), return_exceptions=True)
    assert results[0] == 10
    assert isinstance(results[1], InvalidArgument)


async def test_a_failed_call_fails_every_caller_of_the_batch_and_the_next_batch_still_runs() -> None:
    model = FakeModel()
    model.fail_with = Unavailable("model down")
    coalescer: Coalescer[int, int] = Coalescer(model.send)
    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    model.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    model.fail_with = None
    assert await coalescer.submit(4) == 40


async def test_a_caller_whose_deadline_passes_gets_deadline_exceeded_and_is_not_sent() -> None:
    model = FakeModel()
    coalescer: Coalescer[int, int] = Coalescer(model.send)
    first = asyncio.ensure_future(coalescer.submit(1))
    await asyncio.sleep(0)
    with pytest.raises(DeadlineExceeded):
        await coalescer.submit(2, time_left=0.05)
    model.release.set()
    assert await first == 10
    await coalescer.close()
    assert model.batches == [[1]], "the caller that gave up must not be sent"


async def test_max_in_flight_allows_overlapping_batches() -> None:
    model = FakeModel()
    coalescer: Coalescer[int, int] = Coalescer(model.send, max_in_flight=2)
    calls = [asyncio.ensure_future(coalescer.submit(n)) for n in range(1, 5)]
    await asyncio.sleep(0.01)
    assert model.batches == [[1], [2]]
    model.release.set()
    assert await asyncio.gather(*calls) == [10, 20, 30, 40]
    assert model.batches == [[1], [2], [3, 4]]
