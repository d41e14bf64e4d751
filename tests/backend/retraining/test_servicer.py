"""RetrainingService on a real backend: against a real Prefect server, and with Prefect down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
import httpx
import pytest
from fruitstack.v1 import fruits_pb2, predictions_pb2, retraining_pb2
from grpc import aio
from pymongo import MongoClient

from scripts.processes import PrefectServer
from tests.fixtures.backend import RunningBackend, backend_in_front_of
from tests.fixtures.model_service import ModelService
from tests.fixtures.prefect import PrefectRest, unique_deployment


@pytest.fixture
async def backend_without_prefect(
    model_service: ModelService, mongodb_uri: str, mongodb_database: str
) -> AsyncIterator[RunningBackend]:
    """Nothing listens at its PREFECT_API_URL (the test backends' default)."""
    async with backend_in_front_of(model_service.url, mongodb_uri, mongodb_database) as backend:
        yield backend


def create_deployment(prefect: PrefectServer, name: str) -> str:
    """A deployment of the retrain flow, made through the API (no runner: its runs stay Scheduled)."""
    flow, _, deployment = name.partition("/")
    with httpx.Client(base_url=prefect.api_url, timeout=10) as http:
        flow_id = http.post("/flows/", json={"name": flow}).raise_for_status().json()["id"]
        created = http.post(
            "/deployments/",
            json={"name": deployment, "flow_id": flow_id, "parameter_openapi_schema": {"type": "object"}},
        )
        return str(created.raise_for_status().json()["id"])


async def test_retrain_while_prefect_is_down_is_unavailable_and_the_rest_works(
    backend_without_prefect: RunningBackend,
) -> None:
    backend = backend_without_prefect

    with pytest.raises(aio.AioRpcError) as caught:
        await backend.retraining.Retrain(retraining_pb2.RetrainRequest(), timeout=10)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    details = caught.value.details() or ""
    assert details.startswith("Prefect at http://127.0.0.1:")
    assert "is unavailable" in details
    # Predictions and fruits do not depend on Prefect.
    model = (await backend.predictions.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model
    row = {f.name: f.mean for f in model.features}
    answer = await backend.predictions.Predict(predictions_pb2.PredictRequest(features=row), timeout=10)
    assert answer.label in model.classes
    added = await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="kiwi"), timeout=10)
    assert added.fruit.name == "kiwi"


async def test_the_status_while_prefect_is_down_lists_the_recorded_outcomes(
    backend_without_prefect: RunningBackend, mongodb_uri: str, mongodb_database: str
) -> None:
    started = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    recorded = {
        "_id": "0b6c2e4e-0000-4000-8000-000000000001",
        "flow_run_name": "brave-otter",
        "trigger": "schedule",
        "reason": "",
        "started_at": started,
        "finished_at": started.replace(second=40),
        "duration_s": 40.0,
        "result": "not promoted",
        "detail": "not promoted: f1_macro 0.9300 < champion v1 0.9500, margin 0 (minus the margin)",
        "metric": "f1_macro",
        "candidate_score": 0.93,
        "champion_score": 0.95,
        "candidate_version": "2",
        "champion_version": "1",
        "served_version": "1",
        "data": {
            "dataset": "iris",
            "builtin_rows": 150,
            "feedback_found": 12,
            "train_rows": 120,
            "eval_rows": 41,
        },
    }
    client: MongoClient[dict[str, object]] = MongoClient(mongodb_uri)
    with client:
        client[mongodb_database]["retraining_runs"].insert_one(recorded)

    status = await backend_without_prefect.retraining.GetRetrainingStatus(
        retraining_pb2.GetRetrainingStatusRequest(), timeout=10
    )

    assert not status.prefect_reachable
    assert "is unavailable" in status.prefect_error
    assert status.schedule_interval_s == 0
    assert not status.HasField("next_run_at")
    (run,) = status.runs
    assert (run.id, run.name, run.state, run.trigger) == (
        recorded["_id"],
        "brave-otter",
        "Completed",
        "schedule",
    )
    outcome = run.outcome
    assert (outcome.result, outcome.candidate_score, outcome.champion_score) == ("not promoted", 0.93, 0.95)
    assert (outcome.candidate_version, outcome.champion_version) == ("2", "1")
    assert (outcome.data.feedback_found, outcome.data.eval_rows, outcome.data.duplicate_rows) == (12, 41, 0)
    assert run.started_at.ToDatetime(tzinfo=UTC) == started


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (retraining_pb2.RetrainRequest(reason="x" * 201), "reason must be at most 200 characters, got 201"),
        (retraining_pb2.RetrainRequest(reason="new\x00data"), "reason must be plain text"),
        (retraining_pb2.RetrainRequest(reason="new\u200bdata"), "reason must be plain text"),
        (retraining_pb2.GetRetrainingStatusRequest(limit=-1), "limit must not be negative, got -1"),
    ],
)
async def test_bad_requests_are_invalid_argument(
    backend_without_prefect: RunningBackend, request_: object, message: str
) -> None:
    stub = backend_without_prefect.retraining
    call = stub.Retrain if isinstance(request_, retraining_pb2.RetrainRequest) else stub.GetRetrainingStatus

    with pytest.raises(aio.AioRpcError) as caught:
        await call(request_, timeout=10)  # type: ignore[arg-type]

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(message)


async def test_no_such_deployment_is_a_failed_precondition(
    model_service: ModelService, prefect_server: PrefectServer, mongodb_uri: str, mongodb_database: str
) -> None:
    deployment = unique_deployment()
    async with backend_in_front_of(
        model_service.url,
        mongodb_uri,
        mongodb_database,
        prefect_api_url=prefect_server.api_url,
        retraining_deployment=deployment,
    ) as backend:
        with pytest.raises(aio.AioRpcError) as caught:
            await backend.retraining.Retrain(retraining_pb2.RetrainRequest(), timeout=10)
        status = await backend.retraining.GetRetrainingStatus(
            retraining_pb2.GetRetrainingStatusRequest(), timeout=10
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"has no deployment {deployment!r}" in (caught.value.details() or "")
    assert "python -m pipelines" in (caught.value.details() or "")
    assert status.prefect_reachable  # it answered: there is no such deployment
    assert "has no deployment" in status.prefect_error


async def test_retrain_asks_prefect_for_a_run_with_its_trigger_and_reason(
    model_service: ModelService,
    prefect_server: PrefectServer,
    prefect_rest: PrefectRest,
    mongodb_uri: str,
    mongodb_database: str,
) -> None:
    deployment = unique_deployment()
    deployment_id = create_deployment(prefect_server, deployment)
    async with backend_in_front_of(
        model_service.url,
        mongodb_uri,
        mongodb_database,
        prefect_api_url=prefect_server.api_url,
        retraining_deployment=deployment,
    ) as backend:
        asked = await backend.retraining.Retrain(
            retraining_pb2.RetrainRequest(reason="  new labels "), timeout=10
        )
        status = await backend.retraining.GetRetrainingStatus(
            retraining_pb2.GetRetrainingStatusRequest(limit=5), timeout=10
        )

    (created,) = prefect_rest.flow_runs(deployment_id)
    assert created["id"] == asked.run.id
    assert created["parameters"] == {"trigger": "on demand", "reason": "new labels"}
    assert created["tags"] == ["on-demand"]
    assert (asked.run.state, asked.run.trigger, asked.run.reason) == ("Scheduled", "on demand", "new labels")
    assert not asked.HasField("running")  # nothing was going
    assert status.prefect_reachable
    assert status.deployment == deployment
    assert status.schedule_interval_s == 0  # this deployment has no schedule
    (listed,) = status.runs
    assert (listed.id, listed.state) == (asked.run.id, "Scheduled")
    assert not listed.HasField("outcome")  # it has not run
