"""MongoDB going away and coming back, with the backend running all along (real nx-27017)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import grpc
import pytest
from fruitstack.v1 import fruits_pb2
from grpc import aio

from backend.health_watcher import FRUIT_SERVICE, OVERALL
from scripts.processes import NxServer
from tests.fixtures.backend import RunningBackend, backend_settings, running_backend


async def wait_for_status(backend: RunningBackend, service: str, status: str) -> None:
    deadline = time.monotonic() + 15
    while (current := await backend.status(service)) != status:
        assert time.monotonic() < deadline, f"{service} stayed {current}, expected {status}"
        await asyncio.sleep(0.1)


async def test_outage_gives_unavailable_and_not_serving_then_recovers(
    private_mongo: NxServer, mongodb_database: str
) -> None:
    settings = backend_settings(mongodb_uri=private_mongo.uri, mongodb_database=mongodb_database)
    async with running_backend(settings) as backend:
        assert await backend.status(FRUIT_SERVICE) == "SERVING"
        before = await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="before"), timeout=5)

        await asyncio.to_thread(private_mongo.stop)
        calls: list[Awaitable[object]] = [
            backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="during"), timeout=3),
            backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=3),
            backend.fruits.SummarizeFruits(fruits_pb2.SummarizeFruitsRequest(), timeout=3),
            backend.fruits.DeleteFruit(fruits_pb2.DeleteFruitRequest(id=before.fruit.id), timeout=3),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
            assert "unavailable" in (info.value.details() or "")
            assert time.monotonic() - started < 3, "the call was not answered within its deadline"
        await wait_for_status(backend, FRUIT_SERVICE, "NOT_SERVING")
        assert await backend.status(OVERALL) == "SERVING"  # the process itself still serves

        # Back again, same data: the backend reconnects by itself.
        await asyncio.to_thread(private_mongo.start)
        await wait_for_status(backend, FRUIT_SERVICE, "SERVING")
        after = await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="after"), timeout=5)
        page = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=5)
        assert [f.id for f in page.fruits] == [after.fruit.id, before.fruit.id]


async def test_a_short_deadline_still_gets_unavailable_in_time(
    private_mongo: NxServer, mongodb_database: str
) -> None:
    settings = backend_settings(mongodb_uri=private_mongo.uri, mongodb_database=mongodb_database)
    async with running_backend(settings) as backend:
        await asyncio.to_thread(private_mongo.stop)
        started = time.monotonic()
        with pytest.raises(aio.AioRpcError) as info:
            await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=0.6)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert time.monotonic() - started < 0.6 + 0.2


async def test_backend_started_while_mongodb_is_down_comes_up_by_itself(
    private_mongo: NxServer, mongodb_database: str
) -> None:
    private_mongo.stop()
    settings = backend_settings(mongodb_uri=private_mongo.uri, mongodb_database=mongodb_database)
    async with running_backend(settings) as backend:
        assert await backend.status(FRUIT_SERVICE) == "NOT_SERVING"
        await asyncio.to_thread(private_mongo.start)
        await wait_for_status(backend, FRUIT_SERVICE, "SERVING")
        response = await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="late"), timeout=5)
        assert response.fruit.name == "late"


async def test_a_frozen_mongodb_is_noticed_then_calls_fail_fast_with_unavailable(
    private_mongo: NxServer, mongodb_database: str
) -> None:
    # SIGSTOP: connections stay open and nothing answers, as with `docker pause` or a hung host.
    settings = backend_settings(
        mongodb_uri=private_mongo.uri, mongodb_database=mongodb_database, mongodb_heartbeat_ms=500
    )
    async with running_backend(settings) as backend:
        await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="before"), timeout=5)
        private_mongo.pause()
        try:
            # The driver's monitor gives the frozen server up within heartbeat + timeout (0.5 + 1 s).
            await asyncio.sleep(0.5 + 1.0 + 0.5)
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(aio.AioRpcError) as info:
                    await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=2)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
                # Fast: not the store's 1 s budget, let alone the 2 s deadline.
                assert time.monotonic() - started < 0.5
        finally:
            private_mongo.resume()
        # Thawed: the monitor's next check finds it, and calls succeed again by themselves.
        deadline = time.monotonic() + 10
        while True:
            try:
                await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=2)
                break
            except aio.AioRpcError:
                assert time.monotonic() < deadline, "calls did not recover after MongoDB thawed"
                await asyncio.sleep(0.2)
