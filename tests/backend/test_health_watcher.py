"""Unit tests of the health watcher: it follows its probe and always stops when cancelled."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from backend.exceptions import Unavailable
from backend.health_watcher import DependencyWatcher

SERVICE = "fruitstack.v1.FruitService"


async def status(health: HealthServicer) -> int:
    response = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), None)
    return int(response.status)


async def test_watcher_follows_its_probe() -> None:
    health = HealthServicer()
    up = True

    async def probe() -> None:
        if not up:
            raise Unavailable("down")

    watcher = DependencyWatcher(service=SERVICE, probe=probe, health=health, interval_s=0.01)
    assert await watcher.check_once()
    assert await status(health) == health_pb2.HealthCheckResponse.SERVING
    up = False
    assert not await watcher.check_once()
    assert await status(health) == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_watcher_stops_even_when_the_probe_swallows_the_cancel() -> None:
    # What a database or HTTP client may do: a cancel inside an operation comes out as its own error.
    probing = asyncio.Event()

    async def probe() -> None:
        probing.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise Unavailable("connection closed") from None

    watcher = DependencyWatcher(service=SERVICE, probe=probe, health=HealthServicer(), interval_s=0.01)
    task = asyncio.create_task(watcher.run())
    await probing.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert task in done, "the watcher kept running after it was cancelled"
    assert task.cancelled()
