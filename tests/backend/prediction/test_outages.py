"""PredictionService when things go wrong: model service killed and restarted, model updated under
load, MongoDB down, and a model service that never answers (real processes, backend in-process)."""

from __future__ import annotations

import asyncio
import time
from typing import TypeAlias

import aiohttp
import grpc
import pytest
from fruitstack.v1 import fruits_pb2, predictions_pb2, predictions_pb2_grpc
from grpc import aio

from backend.health_watcher import FRUIT_SERVICE, PREDICTION_SERVICE
from scripts.processes import NxServer
from tests.fixtures.backend import RunningBackend, backend_in_front_of
from tests.fixtures.model_service import ModelService

# The async stub type exists only in the typed stubs (.pyi), hence a string.
Stub: TypeAlias = "predictions_pb2_grpc.PredictionServiceAsyncStub"


def prediction_stub(backend: RunningBackend) -> Stub:
    return predictions_pb2_grpc.PredictionServiceStub(backend.channel)


async def wait_for_status(backend: RunningBackend, service: str, status: str) -> None:
    deadline = time.monotonic() + 20
    while (current := await backend.status(service)) != status:
        assert time.monotonic() < deadline, f"{service} stayed {current}, expected {status}"
        await asyncio.sleep(0.1)


async def typical_request(stub: Stub) -> predictions_pb2.PredictRequest:
    model = (await stub.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model
    return predictions_pb2.PredictRequest(features={f.name: f.mean for f in model.features})


async def test_model_service_killed_is_unavailable_fruits_still_work_and_restart_recovers(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    backend = backend_with_private_model
    stub = prediction_stub(backend)
    request = await typical_request(stub)
    assert (await stub.Predict(request, timeout=10)).label
    await wait_for_status(backend, PREDICTION_SERVICE, "SERVING")

    await asyncio.to_thread(private_model_service.kill)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Predict(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "model service" in (caught.value.details() or "")
    for call in (
        stub.GetModel(predictions_pb2.GetModelRequest(), timeout=10),
        stub.UpdateModel(predictions_pb2.UpdateModelRequest(), timeout=10),
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    await wait_for_status(backend, PREDICTION_SERVICE, "NOT_SERVING")

    # The fruit store does not depend on the model service.
    assert await backend.status(FRUIT_SERVICE) == "SERVING"
    added = await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="kiwi"), timeout=5)
    listed = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=5)
    assert added.fruit.id in [f.id for f in listed.fruits]

    await asyncio.to_thread(private_model_service.start)
    await wait_for_status(backend, PREDICTION_SERVICE, "SERVING")
    answer = await stub.Predict(request, timeout=10)
    assert answer.label
    assert answer.model_version


async def test_a_stalled_model_service_fails_calls_fast_once_known_down_and_recovers(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    """The circuit breaker: no caller waits out its deadline for a service health already calls down."""
    backend = backend_with_private_model
    stub = prediction_stub(backend)
    request = await typical_request(stub)
    await wait_for_status(backend, PREDICTION_SERVICE, "SERVING")

    private_model_service.process.pause()  # SIGSTOP: connections open, nothing answers
    try:
        await wait_for_status(backend, PREDICTION_SERVICE, "NOT_SERVING")
        deadline_s = 10.0
        for _ in range(5):
            began = time.monotonic()
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.Predict(request, timeout=deadline_s)
            took = time.monotonic() - began
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "failing fast" in (caught.value.details() or "")
            assert took < deadline_s / 10, f"answered after {took:.2f}s of a {deadline_s}s deadline"
    finally:
        private_model_service.process.resume()
    await wait_for_status(backend, PREDICTION_SERVICE, "SERVING")
    assert (await stub.Predict(request, timeout=10)).label


async def test_update_model_under_a_stream_of_predicts_loses_none(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    backend = backend_with_private_model
    stub = prediction_stub(backend)
    request = await typical_request(stub)
    before = (await stub.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model.version
    stop = asyncio.Event()
    versions: list[str] = []
    failures: list[aio.AioRpcError] = []

    async def caller() -> None:
        while not stop.is_set():
            try:
                versions.append((await stub.Predict(request, timeout=20)).model_version)
            except aio.AioRpcError as exc:
                failures.append(exc)

    callers = [asyncio.create_task(caller()) for _ in range(8)]
    try:
        new_version = await asyncio.to_thread(private_model_service.train, seed=7)
        await asyncio.sleep(0.3)
        update = await stub.UpdateModel(predictions_pb2.UpdateModelRequest(), timeout=60)
        calls_at_update = len(versions)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*callers)

    assert failures == []
    assert update.previous_version == before
    assert update.current_version == new_version != before
    assert len(versions) > calls_at_update > 0
    assert versions[0] == before
    assert versions[-1] == new_version
    model = (await stub.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model
    assert model.version == new_version


async def test_update_to_a_refused_artifact_is_failed_precondition_and_serving_goes_on(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    """A corrupt artifact (the model service's 409) is a problem to fix, not an outage to retry."""
    stub = prediction_stub(backend_with_private_model)
    request = await typical_request(stub)
    # A new champion whose artifact then changes in the registry: UpdateModel must refuse it.
    tampered = await asyncio.to_thread(private_model_service.train, seed=11)
    private_model_service.corrupt(tampered)

    with pytest.raises(aio.AioRpcError) as caught:
        await stub.UpdateModel(predictions_pb2.UpdateModelRequest(), timeout=60)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = caught.value.details() or ""
    assert "refusing to load" in details
    assert tampered in details
    answer = await stub.Predict(request, timeout=10)
    assert answer.model_version == private_model_service.version


async def test_predictions_keep_working_while_mongodb_is_down(
    model_service: ModelService, private_mongo: NxServer, mongodb_database: str
) -> None:
    async with backend_in_front_of(model_service.url, private_mongo.uri, mongodb_database) as backend:
        stub = prediction_stub(backend)
        request = await typical_request(stub)
        await asyncio.to_thread(private_mongo.stop)
        await wait_for_status(backend, FRUIT_SERVICE, "NOT_SERVING")
        assert (await stub.Predict(request, timeout=10)).label
        assert (await stub.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model.version
        assert await backend.status(PREDICTION_SERVICE) == "SERVING"


async def test_a_model_swapped_behind_the_backend_is_picked_up_from_the_next_request(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    backend = backend_with_private_model
    stub = prediction_stub(backend)
    iris_request = await typical_request(stub)
    assert (await stub.Predict(iris_request, timeout=10)).label

    # Someone reloads the model service directly (not through UpdateModel) to a wine model.
    wine_version = await asyncio.to_thread(private_model_service.train, dataset="wine", seed=1)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{private_model_service.url}/reload", json={}) as response,
    ):
        assert response.status == 200, await response.text()
    await asyncio.sleep(1.1)  # the backend re-reads the schema at most once a second

    wine = predictions_pb2.PredictRequest(features={"alcohol": 13.0, "malic_acid": 2.3, "ash": 2.4})
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Predict(wine, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert wine_version in (caught.value.details() or "")
    assert "proline" in (caught.value.details() or "")

    model = (await stub.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model
    full = predictions_pb2.PredictRequest(features={f.name: f.mean for f in model.features})
    answer = await stub.Predict(full, timeout=10)
    assert answer.model_version == wine_version
