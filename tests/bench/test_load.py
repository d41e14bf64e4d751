"""The benchmark's closed-loop load generator: what it counts and how it splits CPU per request."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bench.load import Outcome, run_load, run_paced


async def test_only_calls_started_after_the_warm_up_are_measured_and_failures_are_counted_apart() -> None:
    started: list[int] = []

    async def call(i: int) -> None:
        started.append(i)
        await asyncio.sleep(0.001)
        if i % 10 == 0:
            raise RuntimeError("a failed call")

    result = await run_load(call, concurrency=4, seconds=0.3, warmup=0.1)

    assert result.requests + result.errors < len(started)  # the warm-up's calls are not counted
    assert result.errors > 0
    assert 5 * result.errors < result.requests < 15 * result.errors  # 1 in 10 calls fails
    assert result.throughput == pytest.approx(result.requests / result.seconds, rel=0.01)
    assert result.p50_ms <= result.p99_ms
    assert result.cpu_ms_per_request == {}


async def test_cpu_is_the_difference_over_the_measured_time_per_successful_request() -> None:
    clock = itertools.count()  # each probe reads one more "second" of CPU: exactly 1 s is measured

    async def call(i: int) -> None:
        await asyncio.sleep(0.001)

    result = await run_load(
        call, concurrency=2, seconds=0.2, warmup=0.05, cpu=lambda: {"server": float(next(clock))}
    )

    assert result.requests > 0
    assert result.cpu_ms_per_request == {"server": 1000 / result.requests}


async def test_paced_calls_start_on_the_clock_whatever_earlier_answers_take() -> None:
    outcomes: list[Outcome] = []

    async def call(i: int) -> None:
        await asyncio.sleep(0.3 if i == 0 else 0.001)  # the first answer is slow
        if i % 10 == 3:
            raise RuntimeError("a failed call")

    sent = await run_paced(call, rate=100, seconds=0.5, record=outcomes.append)

    assert sent == len(outcomes) == 50
    by_index = {o.index: o for o in outcomes}
    assert [by_index[i].due_s for i in range(3)] == pytest.approx([0.0, 0.01, 0.02], abs=0.005)
    # The loop's timer may fire a hair early (its clock resolution), so not exactly >= 0.3.
    assert by_index[0].latency_s > 0.25
    assert by_index[1].latency_s < 0.1  # not held up by call 0: open loop
    assert [o.index for o in outcomes if o.status != "OK"] == [3, 13, 23, 33, 43]
    assert {o.status for o in outcomes} == {"OK", "RuntimeError"}
