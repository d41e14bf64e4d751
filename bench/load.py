"""Closed-loop load generators: N callers each sending one request after the other for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


async def run_load(
    call: Callable[[int], Awaitable[None]], *, concurrency: int, seconds: float, warmup: float
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

    await asyncio.gather(*(caller(w) for w in range(concurrency)))
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
    )


async def http_load(
    url: str, bodies: list[dict[str, float]], *, concurrency: int, seconds: float, warmup: float
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

        return await run_load(call, concurrency=concurrency, seconds=seconds, warmup=warmup)


async def grpc_load(
    target: str, bodies: list[dict[str, float]], *, concurrency: int, seconds: float, warmup: float
) -> LoadResult:
    """Call PredictionService.Predict on target with the same bodies."""
    requests = [predictions_pb2.PredictRequest(features=b) for b in bodies]
    async with aio.insecure_channel(target) as channel:
        stub = predictions_pb2_grpc.PredictionServiceStub(channel)

        async def call(i: int) -> None:
            await stub.Predict(requests[i % len(requests)], timeout=10)

        return await run_load(call, concurrency=concurrency, seconds=seconds, warmup=warmup)
