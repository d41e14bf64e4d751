"""Load generators: closed loop (N callers each sending one request after the other for a fixed time)
and open loop (requests sent on a clock at a fixed rate, whatever the answers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import numpy as np
import orjson
from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from grpc import aio


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float  # successful requests per second
    p50_ms: float
    p99_ms: float
    # CPU milliseconds per successful request, per process (from a CpuProbe), over the measured time.
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# CPU seconds (user + system) used so far, per process name.
CpuProbe = Callable[[], dict[str, float]]


async def run_load(
    call: Callable[[int], Awaitable[None]],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    cpu: CpuProbe | None = None,
) -> LoadResult:
    """Run `concurrency` callers of call(i) for warmup + seconds; measure only after the warm-up."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def caller(worker: int) -> None:
        nonlocal errors
        i = worker
        while (began := time.perf_counter()) < stop_at:
            try:
                await call(i)
            except Exception:
                if began >= measure_from:
                    errors += 1
                continue
            finally:
                i += concurrency
            if began >= measure_from:
                latencies.append(time.perf_counter() - began)

    async def cpu_at_measure_start() -> dict[str, float]:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        return cpu() if cpu else {}

    cpu_before = asyncio.ensure_future(cpu_at_measure_start())
    await asyncio.gather(*(caller(w) for w in range(concurrency)))
    cpu_after = cpu() if cpu else {}
    used = {name: cpu_after[name] - spent for name, spent in (await cpu_before).items()}
    elapsed = max(time.perf_counter(), stop_at) - measure_from
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return LoadResult(
        concurrency=concurrency,
        requests=len(latencies),
        errors=errors,
        seconds=round(elapsed, 3),
        throughput=len(latencies) / elapsed,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        cpu_ms_per_request={name: 1000 * t / len(latencies) for name, t in used.items()} if latencies else {},
    )


async def http_load(
    url: str,
    bodies: list[dict[str, float]],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    cpu: CpuProbe | None = None,
) -> LoadResult:
    """POST {"features": ...} bodies to url (the FastAPI baseline)."""
    payloads = [orjson.dumps({"features": b}) for b in bodies]
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(i: int) -> None:
            async with session.post(url, data=payloads[i % len(payloads)], headers=headers) as response:
                await response.read()
                response.raise_for_status()

        return await run_load(call, concurrency=concurrency, seconds=seconds, warmup=warmup, cpu=cpu)


async def grpc_load(
    target: str,
    bodies: list[dict[str, float]],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    cpu: CpuProbe | None = None,
) -> LoadResult:
    """Call PredictionService.Predict on target with the same bodies."""
    requests = [predictions_pb2.PredictRequest(features=b) for b in bodies]
    async with aio.insecure_channel(target) as channel:
        stub = predictions_pb2_grpc.PredictionServiceStub(channel)

        async def call(i: int) -> None:
            await stub.Predict(requests[i % len(requests)], timeout=10)

        return await run_load(call, concurrency=concurrency, seconds=seconds, warmup=warmup, cpu=cpu)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call of an open-loop run: when it was due, how long from then until it ended, its status."""

    index: int
    due_s: float  # seconds after the run started
    latency_s: float  # from when it was due, not from when it was sent (see run_paced)
    status: str  # "OK", a gRPC status code name, or the name of the exception's class


def status_of(exc: Exception) -> str:
    return exc.code().name if isinstance(exc, aio.AioRpcError) else type(exc).__name__


async def run_paced(
    call: Callable[[int], Awaitable[None]],
    *,
    rate: float,
    seconds: float,
    record: Callable[[Outcome], None],
) -> int:
    """Start call(i) at `rate` calls per second for `seconds`, each at its own time; record every outcome.

    Open loop: a slow answer does not delay the next call, as with users who do not wait for each
    other. Latency counts from when a call was due, so a client that falls behind (its own event loop
    busy) shows up in the latencies instead of quietly lowering the rate (coordinated omission).
    Returns how many calls were started.
    """
    started = time.perf_counter()
    total = int(rate * seconds)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        try:
            await call(i)
            status = "OK"
        except Exception as exc:
            status = status_of(exc)
        record(Outcome(i, due - started, time.perf_counter() - due, status))

    for i in range(total):
        due = started + i / rate
        # sleep(0) when behind still lets the calls already started run.
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        task = asyncio.create_task(one(i, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    return total
