"""The registry over gRPC: ListModelVersions, UpdateModel with a version (rollback), MLflow outages.

A real backend in front of a real `bentoml serve`, whose registered model lives in a real
`mlflow server` (its own registered model, or its own server for the outage).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from fruitstack.v1 import predictions_pb2
from grpc import aio

from backend.health_watcher import PREDICTION_SERVICE
from scripts.processes import MlflowServer
from tests.fixtures.backend import RunningBackend, backend_in_front_of
from tests.fixtures.model_service import ModelService, StartModelService

IRIS = {"sepal_length_cm": 5.9, "sepal_width_cm": 3.0, "petal_length_cm": 5.1, "petal_width_cm": 1.8}
PREDICT = predictions_pb2.PredictRequest(features=IRIS)


async def versions(backend: RunningBackend) -> predictions_pb2.ListModelVersionsResponse:
    return await backend.predictions.ListModelVersions(predictions_pb2.ListModelVersionsRequest(), timeout=30)


async def test_versions_list_the_gates_decisions_and_a_weak_candidate_stays_challenger(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    service = private_model_service
    weak = await asyncio.to_thread(lambda: service.train(params=["C=0.0001"], promote=False))
    listed = await versions(backend_with_private_model)
    assert listed.name == service.registered_model
    assert listed.champion == listed.served_version == service.version
    by_version = {v.version: v for v in listed.versions}
    assert [v.version for v in listed.versions] == sorted(by_version, key=int, reverse=True)
    challenger = by_version[weak]
    assert "challenger" in challenger.aliases
    assert challenger.gate.decision == "challenger"
    assert challenger.gate.reason.startswith("not promoted")
    assert challenger.gate.HasField("champion_score")
    assert challenger.gate.candidate_score < challenger.gate.champion_score
    assert {"accuracy", "f1_macro"} <= set(challenger.metrics)
    assert challenger.run_id
    assert len(challenger.sha256) == 64
    assert "champion" in by_version[service.version].aliases


async def test_a_rollback_under_a_stream_of_predicts_fails_none_and_names_only_the_two_versions(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    backend = backend_with_private_model
    old = private_model_service.version
    new = await asyncio.to_thread(private_model_service.train, seed=7)  # promoted: the champion
    update = await backend.predictions.UpdateModel(predictions_pb2.UpdateModelRequest(), timeout=60)
    assert (update.previous_version, update.current_version) == (old, new)

    stop = asyncio.Event()
    seen: list[str] = []
    failures: list[aio.AioRpcError] = []

    async def caller() -> None:
        while not stop.is_set():
            try:
                seen.append((await backend.predictions.Predict(PREDICT, timeout=20)).model_version)
            except aio.AioRpcError as exc:
                failures.append(exc)

    callers = [asyncio.create_task(caller()) for _ in range(8)]
    try:
        await asyncio.sleep(0.5)
        rollback = await backend.predictions.UpdateModel(
            predictions_pb2.UpdateModelRequest(version=old), timeout=60
        )
        at_rollback = len(seen)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*callers)

    assert failures == []
    assert (rollback.previous_version, rollback.current_version) == (new, old)
    assert set(seen) == {old, new}
    assert len(seen) > at_rollback > 0
    assert seen[-1] == old
    model = (await backend.predictions.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model
    assert model.version == old
    assert "champion" in model.aliases
    listed = await versions(backend)
    rolled_back = next(v for v in listed.versions if v.version == old)
    assert rolled_back.gate.decision == "manual"
    assert listed.champion == old


@pytest.mark.parametrize(
    ("version", "code", "words"),
    [
        ("999", grpc.StatusCode.NOT_FOUND, "has no registered version '999'"),
        ("abc", grpc.StatusCode.INVALID_ARGUMENT, "is not a registry version number"),
        ("-1", grpc.StatusCode.INVALID_ARGUMENT, "is not a registry version number"),
    ],
)
async def test_a_version_that_is_not_registered_is_refused(
    backend_with_model: RunningBackend, version: str, code: grpc.StatusCode, words: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await backend_with_model.predictions.UpdateModel(
            predictions_pb2.UpdateModelRequest(version=version), timeout=30
        )
    assert caught.value.code() == code
    assert words in (caught.value.details() or "")


async def test_mlflow_stopped_predictions_go_on_update_model_is_unavailable_naming_mlflow_then_works(
    model_service_factory: StartModelService,
    private_mlflow_server: MlflowServer,
    mongodb_uri: str,
    mongodb_database: str,
) -> None:
    service = model_service_factory(mlflow=private_mlflow_server)
    async with backend_in_front_of(service.url, mongodb_uri, mongodb_database) as backend:
        await backend.wait_for_status(PREDICTION_SERVICE, "SERVING")
        await asyncio.to_thread(private_mlflow_server.stop)
        for _ in range(5):
            assert (await backend.predictions.Predict(PREDICT, timeout=10)).model_version == service.version
        for call in (
            backend.predictions.UpdateModel(predictions_pb2.UpdateModelRequest(), timeout=30),
            backend.predictions.ListModelVersions(predictions_pb2.ListModelVersionsRequest(), timeout=30),
        ):
            with pytest.raises(aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "MLflow" in (caught.value.details() or "")
        # The model service is up and answering: health and the breaker must not say otherwise.
        assert await backend.status(PREDICTION_SERVICE) == "SERVING"
        model = (await backend.predictions.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model
        assert not model.registry.reachable
        assert "unreachable" in model.registry.error

        await asyncio.to_thread(private_mlflow_server.start)
        update = await backend.predictions.UpdateModel(predictions_pb2.UpdateModelRequest(), timeout=60)
        assert update.current_version == service.version
        assert (await versions(backend)).champion == service.version
