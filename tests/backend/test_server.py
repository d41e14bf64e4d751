"""The backend as a whole: health, reflection, grpcurl, graceful SIGTERM and durability across SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading

import grpc
import pytest
from fruitstack.v1 import fruits_pb2, fruits_pb2_grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backend.auth.roles import Role
from backend.health_watcher import FRUIT_SERVICE, OVERALL, PREDICTION_SERVICE
from scripts.processes import NxServer
from tests.fixtures.backend import (
    BackendProcess,
    RunningBackend,
    backend_settings,
    bearer,
    grpcurl_header,
    mint_token,
    running_backend,
)
from tests.support import run_grpcurl


async def grpcurl(*args: str) -> str:
    code, out, err = await run_grpcurl(*args)
    assert code == 0, f"grpcurl {' '.join(args)} failed: {err}"
    return out


async def test_health_reports_each_service(backend: RunningBackend) -> None:
    assert await backend.status(OVERALL) == "SERVING"
    assert await backend.status(FRUIT_SERVICE) == "SERVING"
    # No model service behind this backend.
    assert await backend.status(PREDICTION_SERVICE) == "NOT_SERVING"
    with pytest.raises(aio.AioRpcError) as info:
        await backend.status("no.such.Service")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_grpcurl_lists_services_and_round_trips_fruits(backend: RunningBackend) -> None:
    services = (await grpcurl("-plaintext", backend.target, "list")).split()
    assert set(services) >= {
        "fruitstack.v1.FruitService",
        "fruitstack.v1.PredictionService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    description = await grpcurl("-plaintext", backend.target, "describe", "fruitstack.v1.FruitService")
    assert "rpc ListFruits ( .fruitstack.v1.ListFruitsRequest )" in description

    editor = grpcurl_header(mint_token(Role.EDITOR))
    added = json.loads(
        await grpcurl(
            "-plaintext",
            *editor,
            "-d",
            '{"name": " Mango "}',
            backend.target,
            "fruitstack.v1.FruitService/AddFruit",
        )
    )
    assert added["fruit"]["name"] == "Mango"
    listed = json.loads(
        await grpcurl(
            "-plaintext",
            *editor,
            "-d",
            '{"page_size": 10}',
            backend.target,
            "fruitstack.v1.FruitService/ListFruits",
        )
    )
    assert listed["fruits"] == [added["fruit"]]
    assert listed["total_size"] == "1"  # int64 is a string in proto3 JSON


EDITOR = bearer(mint_token(Role.EDITOR))


def _add_until_failure(target: str, acknowledged: list[str], started: threading.Event) -> None:
    """Add fruits one by one until a call fails; record the id of every acknowledged one."""
    with grpc.insecure_channel(target) as channel:
        stub = fruits_pb2_grpc.FruitServiceStub(channel)
        for i in range(100_000):
            try:
                response = stub.AddFruit(
                    fruits_pb2.AddFruitRequest(name=f"durable {i}"), metadata=EDITOR, timeout=5
                )
            except grpc.RpcError:
                return
            acknowledged.append(response.fruit.id)
            if len(acknowledged) == 20:
                started.set()


def _all_ids(target: str) -> list[str]:
    ids: list[str] = []
    token = ""
    with grpc.insecure_channel(target) as channel:
        stub = fruits_pb2_grpc.FruitServiceStub(channel)
        while True:
            page = stub.ListFruits(
                fruits_pb2.ListFruitsRequest(page_size=1000, page_token=token), metadata=EDITOR, timeout=10
            )
            ids.extend(f.id for f in page.fruits)
            if not (token := page.next_page_token):
                return ids


def test_every_acknowledged_fruit_survives_sigkill(backend_process: BackendProcess) -> None:
    acknowledged: list[str] = []
    started = threading.Event()
    writer = threading.Thread(target=_add_until_failure, args=(backend_process.target, acknowledged, started))
    writer.start()
    assert started.wait(timeout=60), "the backend did not acknowledge 20 fruits"
    backend_process.process.kill()  # while the writer is mid-stream
    writer.join(timeout=30)
    assert not writer.is_alive()

    backend_process.start()
    stored = set(_all_ids(backend_process.target))
    missing = [fruit_id for fruit_id in acknowledged if fruit_id not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged fruits were lost"


async def test_sigterm_reports_not_serving_then_exits_cleanly(backend_process: BackendProcess) -> None:
    proc = backend_process.process.proc
    assert proc is not None
    async with aio.insecure_channel(backend_process.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=FRUIT_SERVICE)
        )
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        os.kill(proc.pid, signal.SIGTERM)
        second = await asyncio.wait_for(watch.read(), timeout=10)
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    returncode = await asyncio.to_thread(proc.wait, 30)
    assert returncode == 0, backend_process.process.log_tail()
    assert "backend stopped" in backend_process.process.log_tail()


async def test_stop_lets_in_flight_calls_finish_and_refuses_new_ones(
    private_mongo: NxServer, mongodb_database: str
) -> None:
    settings = backend_settings(mongodb_uri=private_mongo.uri, mongodb_database=mongodb_database)
    settings = settings.model_copy(update={"mongodb_timeout_ms": 10_000})
    async with running_backend(settings) as backend:
        private_mongo.pause()  # so that the next call is still in flight when the stop begins
        try:

            async def add() -> fruits_pb2.AddFruitResponse:
                return await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="in flight"), timeout=20)

            in_flight = asyncio.create_task(add())
            await asyncio.sleep(0.5)
            assert not in_flight.done()
            stopping = asyncio.create_task(backend.server.stop(grace=15))
            await asyncio.sleep(0.5)
            with pytest.raises(aio.AioRpcError) as info:
                await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            private_mongo.resume()
        response = await in_flight
        assert response.fruit.name == "in flight"
        await stopping
