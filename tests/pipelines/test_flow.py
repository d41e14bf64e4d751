"""The retraining flow end to end, on real parts: a Prefect server (session), the real runner
(`python -m pipelines`) serving a deployment of each test's own, a real MLflow registry and model
service, MongoDB, and the backend in this process, whose RetrainingService asks for the runs.

Each test's runner retries a network step once after 0.2 s (RETRAINING_RETRIES/RETRY_DELAY_S).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fruitstack.v1 import predictions_pb2, retraining_pb2
from pymongo import MongoClient

from scripts.processes import MlflowServer, PrefectServer, free_port
from scripts.traffic import run_traffic
from tests.fixtures.backend import TEST_ADMIN, RunningBackend, backend_in_front_of
from tests.fixtures.mlflow import unique_model_name
from tests.fixtures.model_service import ModelService, train_model
from tests.fixtures.prefect import (
    PrefectRest,
    RetrainingRunner,
    StartRunner,
    unique_deployment,
    wait_for_runs,
)

pytestmark = pytest.mark.timeout(600)

SHIFTED = "petal_length_cm"


@dataclass(frozen=True)
class Retraining:
    """What every test here runs against: the session's Prefect server and this test's MongoDB."""

    prefect: PrefectServer
    rest: PrefectRest
    start_runner: StartRunner
    mongodb_uri: str
    mongodb_database: str

    @asynccontextmanager
    async def backend_and_runner(
        self,
        model: ModelService | tuple[MlflowServer, str],
        *,
        retrain_on_drift: bool = False,
        **runner_settings: str,
    ) -> AsyncIterator[tuple[RunningBackend, RetrainingRunner]]:
        """The backend (asking this test's deployment for runs) and the runner serving it, both started.

        model: the model service, whose registry the runner retrains; or (MLflow server, registered
        model) for a runner without one (the backend then has no model service).
        """
        deployment = unique_deployment()
        if isinstance(model, ModelService):
            model_url, (mlflow, registered_model) = model.url, (model.mlflow, model.registered_model)
        else:
            model_url, (mlflow, registered_model) = f"http://127.0.0.1:{free_port()}", model
        async with backend_in_front_of(
            model_url,
            self.mongodb_uri,
            self.mongodb_database,
            prefect_api_url=self.prefect.api_url,
            retraining_deployment=deployment,
            retrain_on_drift=retrain_on_drift,
        ) as backend:
            # The runner's start blocks for seconds; the backend on this loop keeps serving meanwhile.
            runner = await asyncio.to_thread(
                self.start_runner,
                deployment=deployment,
                mongodb_uri=self.mongodb_uri,
                mongodb_database=self.mongodb_database,
                mlflow=mlflow,
                registered_model=registered_model,
                backend_target=backend.target,
                **runner_settings,
            )
            try:
                yield backend, runner
            finally:
                await asyncio.to_thread(runner.stop)

    async def ended(self, flow_run_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.rest.wait_for_end, flow_run_id, timeout=300)

    def outcomes(self) -> list[dict[str, Any]]:
        client: MongoClient[dict[str, Any]] = MongoClient(self.mongodb_uri, tz_aware=True)
        with client:
            return list(client[self.mongodb_database]["retraining_runs"].find())


@pytest.fixture
def retraining(
    prefect_server: PrefectServer,
    prefect_rest: PrefectRest,
    retraining_runner_factory: StartRunner,
    mongodb_uri: str,
    mongodb_database: str,
) -> Retraining:
    return Retraining(prefect_server, prefect_rest, retraining_runner_factory, mongodb_uri, mongodb_database)


async def retrain(backend: RunningBackend, reason: str = "") -> retraining_pb2.RetrainResponse:
    return await backend.retraining.Retrain(retraining_pb2.RetrainRequest(reason=reason), timeout=20)


async def served_version(backend: RunningBackend) -> str:
    return (await backend.predictions.GetModel(predictions_pb2.GetModelRequest(), timeout=20)).model.version


async def test_feedback_that_teaches_something_new_is_promoted_and_served(
    private_model_service: ModelService,
    retraining: Retraining,
) -> None:
    model = private_model_service
    async with retraining.backend_and_runner(model) as (backend, runner):
        before = await served_version(backend)
        # Inputs the champion never saw (petal length 2.5 cm longer), with their true labels: it
        # gets many of them wrong, and a model trained on them too need not.
        sent = await run_traffic(
            backend.target,
            count=200,
            rate=0,
            concurrency=4,
            shift={SHIFTED: 2.5},
            feedback_error_rate=0.0,
            login=TEST_ADMIN,
        )
        assert sent.feedback_sent == 200

        # An admin's rollback to the version served pins it: a run trains, gates and registers,
        # but what the gate would promote is held back, and the version served stays.
        await backend.predictions.UpdateModel(predictions_pb2.UpdateModelRequest(version=before), timeout=60)
        pinned = await retrain(backend, reason="while pinned")
        assert (await retraining.ended(pinned.run.id))["state"]["type"] == "COMPLETED", runner.log_tail()
        (held,) = retraining.outcomes()
        assert held["result"] == "not promoted", held["detail"]
        assert held["detail"].startswith("held: passes the gate"), held["detail"]
        assert model.champion() == before
        assert await served_version(backend) == before
        listed_versions = await backend.predictions.ListModelVersions(
            predictions_pb2.ListModelVersionsRequest(), timeout=20
        )
        assert (listed_versions.pin.version, listed_versions.pin.pinned_by) == (before, "admin")
        assert listed_versions.versions[0].gate.pinned_version == before
        # Unpinned, the next run gets to decide again, on the same rows, and promotes.
        unpinned = await backend.predictions.UnpinModel(predictions_pb2.UnpinModelRequest(), timeout=20)
        assert unpinned.unpinned_version == before

        asked = await retrain(backend, reason="new feedback")
        run = await retraining.ended(asked.run.id)

        assert run["state"]["type"] == "COMPLETED", runner.log_tail()
        assert run["parameters"] == {"trigger": "on demand", "reason": "new feedback"}
        (outcome,) = [o for o in retraining.outcomes() if o["_id"] == asked.run.id]
        assert outcome["result"] == "promoted", outcome["detail"]
        assert outcome["candidate_score"] > outcome["champion_score"]
        data = outcome["data"]
        assert data["feedback_found"] == 200
        assert data["unusable_rows"] == 0
        assert data["feedback_train_rows"] + data["feedback_eval_rows"] + data["duplicate_rows"] == 200
        assert data["feedback_eval_rows"] > 0
        assert data["eval_rows"] == 38 + data["feedback_eval_rows"]  # iris's fixed holdout plus feedback
        new = outcome["candidate_version"]
        assert new != before
        assert model.champion() == new
        # The flow asked the backend to switch: it serves the new version now, and says so.
        assert outcome["served_version"] == new
        assert await served_version(backend) == new
        # The Prefect UI has the outcome as an artifact of the run, and the steps as task runs.
        (artifact,) = retraining.rest.artifacts(asked.run.id)
        assert artifact["key"] == "retraining-outcome"
        assert "promoted" in artifact["data"]
        steps = {t["name"].rsplit("-", 1)[0] for t in retraining.rest.task_runs(asked.run.id)}
        assert {"load the champion", "gather the training data", "train the candidate"} <= steps
        assert {"register and gate", "switch the served model", "record the outcome"} <= steps
        # ... and the backend reports the run with its outcome.
        status = await backend.retraining.GetRetrainingStatus(
            retraining_pb2.GetRetrainingStatusRequest(), timeout=20
        )
        (listed,) = [r for r in status.runs if r.id == asked.run.id]
        assert (listed.state, listed.trigger, listed.outcome.result) == ("Completed", "on demand", "promoted")
        assert listed.outcome.candidate_version == new
        assert listed.outcome.data.feedback_found == 200


async def test_a_worse_candidate_is_not_promoted_and_says_why(
    private_model_service: ModelService,
    retraining: Retraining,
) -> None:
    model = private_model_service
    # Candidates regularised into near-uselessness (like train.py --param C=0.0001).
    async with retraining.backend_and_runner(
        model,
        RETRAINING_PARAMS=json.dumps({"C": 0.0001}),
    ) as (backend, _runner):
        before = await served_version(backend)
        await run_traffic(
            backend.target, count=40, rate=0, concurrency=4, feedback_error_rate=0.0, login=TEST_ADMIN
        )

        asked = await retrain(backend)
        run = await retraining.ended(asked.run.id)

        assert run["state"]["type"] == "COMPLETED"
        (outcome,) = retraining.outcomes()
        assert outcome["result"] == "not promoted"
        assert outcome["candidate_score"] < outcome["champion_score"]
        assert outcome["detail"].startswith(
            f"not promoted: f1_macro {outcome['candidate_score']:.4f} < champion v{before} "
            f"{outcome['champion_score']:.4f}"
        )
        assert "not promoted" in run["state"]["message"]
        # Registered as the challenger; the champion and what is served are unchanged.
        assert model.champion() == before
        challenger = model.mlflow.client().get_model_version_by_alias(model.registered_model, "challenger")
        assert challenger.version == outcome["candidate_version"]
        assert await served_version(backend) == before


async def test_a_step_that_fails_fails_the_run_without_promoting(
    private_mlflow_server: MlflowServer,
    retraining: Retraining,
) -> None:
    registered_model = unique_model_name()
    train_model(private_mlflow_server, registered_model, extra_args=["--promote"])
    registry = (private_mlflow_server, registered_model)
    async with retraining.backend_and_runner(registry) as (backend, runner):
        private_mlflow_server.stop()

        asked = await retrain(backend)
        run = await retraining.ended(asked.run.id)

        assert run["state"]["type"] == "FAILED", runner.log_tail()
        message = run["state"]["message"]
        assert f"the MLflow registry at {private_mlflow_server.url} is unreachable" in message
        steps = {t["name"].rsplit("-", 1)[0]: t for t in retraining.rest.task_runs(asked.run.id)}
        load = steps["load the champion"]
        assert load["state"]["type"] == "FAILED"
        assert load["run_count"] == 2  # retried once (RETRAINING_RETRIES=1)
        # Nothing after the failed step ran: no training, no registration, no promotion, no switch.
        assert set(steps) == {"load the champion", "record the outcome"}
        (outcome,) = retraining.outcomes()
        assert outcome["result"] == "failed"
        assert outcome["detail"] == message
        assert outcome["candidate_version"] == ""


async def test_no_ask_is_dropped_asks_wait_or_merge_and_runs_go_one_at_a_time(
    private_model_service: ModelService,
    retraining: Retraining,
) -> None:
    async with retraining.backend_and_runner(private_model_service) as (backend, runner):
        # With the runner stopped, what is asked for waits in Prefect, so the order is this test's.
        await asyncio.to_thread(runner.stop)
        first = await retrain(backend, "one")
        assert not first.merged
        # Asks made while a run waits to start are merged into it: it has not read its data yet.
        second, third = await asyncio.gather(retrain(backend, "two"), retrain(backend, "three"))
        assert second.merged
        assert third.merged
        assert second.run.id == third.run.id == first.run.id
        # A second run made straight in Prefect (as another backend racing this one could).
        other = await asyncio.to_thread(
            retraining.rest.create_flow_run, runner.deployment_id, {"trigger": "on demand", "reason": "four"}
        )
        await asyncio.to_thread(runner.start)
        ended = [await retraining.ended(run_id) for run_id in (first.run.id, other["id"])]
        # Both ran, none was cancelled, and never at the same time: one waited for the slot.
        assert [r["state"]["type"] for r in ended] == ["COMPLETED", "COMPLETED"]
        spans = sorted((r["start_time"], r["end_time"]) for r in ended)
        assert spans[0][1] <= spans[1][0]
        waited = [await asyncio.to_thread(retraining.rest.states, r["id"]) for r in ended]
        assert any("AwaitingConcurrencySlot" in names for names in waited), waited
        # Each run recorded its outcome (training data unchanged: skipped).
        recorded = retraining.outcomes()
        assert sorted(o["_id"] for o in recorded) == sorted([first.run.id, other["id"]])
        assert {o["result"] for o in recorded} == {"skipped"}
        status = await backend.retraining.GetRetrainingStatus(
            retraining_pb2.GetRetrainingStatusRequest(), timeout=20
        )
        listed = {r.id: r for r in status.runs}
        assert listed[first.run.id].reason == "one"
        assert {listed[first.run.id].state, listed[other["id"]].state} == {"Completed"}


async def test_the_schedule_has_the_configured_interval(
    private_model_service: ModelService,
    retraining: Retraining,
) -> None:
    async with retraining.backend_and_runner(
        private_model_service,
        RETRAINING_INTERVAL_S="240",
    ) as (backend, runner):
        deployment = retraining.rest.deployment(runner.deployment)
        assert deployment is not None
        (schedule,) = deployment["schedules"]
        assert schedule["active"] is True
        assert schedule["schedule"]["interval"] == 240.0
        assert deployment["global_concurrency_limit"]["limit"] == 1
        assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        # The backend reports the schedule and its next run once Prefect's scheduler has made it.
        status = await backend.retraining.GetRetrainingStatus(
            retraining_pb2.GetRetrainingStatusRequest(), timeout=20
        )
        for _ in range(100):
            if status.HasField("next_run_at"):
                break
            await asyncio.sleep(0.5)
            status = await backend.retraining.GetRetrainingStatus(
                retraining_pb2.GetRetrainingStatusRequest(), timeout=20
            )
        assert status.prefect_reachable
        assert status.schedule_interval_s == 240.0
        next_run = status.next_run_at.ToDatetime(tzinfo=UTC)
        assert datetime.now(UTC) < next_run <= datetime.now(UTC) + timedelta(seconds=240)


async def test_a_drift_event_starts_a_run(
    private_model_service: ModelService,
    retraining: Retraining,
) -> None:
    async with retraining.backend_and_runner(
        private_model_service,
        retrain_on_drift=True,
    ) as (backend, runner):
        # Drift checks run every second here (tests/fixtures/backend.py): the shift turns one to drift.
        await run_traffic(
            backend.target, count=600, rate=0, concurrency=4, shift={SHIFTED: 2.5}, login=TEST_ADMIN
        )

        # The schedule's runs (Prefect makes them ahead of time) are not the drift's.
        runs = await asyncio.to_thread(
            wait_for_runs, retraining.rest, runner.deployment_id, 1, timeout=120, trigger="drift"
        )
        run = runs[0]
        assert SHIFTED in run["parameters"]["reason"]
        assert (await retraining.ended(run["id"]))["state"]["type"] == "COMPLETED", runner.log_tail()
