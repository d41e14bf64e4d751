"""The retraining flow: its tasks are the steps, named as they read in the Prefect UI.

    load the champion        -> the served model, its dataset, the newest version's training data
    gather the training data -> the built-in dataset plus the feedback rows (pipelines/data.py)
    train the candidate      -> bento/train.py's train(), on the fixed split plus the feedback rows
    evaluate on the same data-> candidate and champion on the fixed holdout plus feedback rows
    register and gate        -> bento/train.py's register(): a new version, the registry's gate,
                                and the alias (champion only when the gate passes), set last
    switch the served model  -> PredictionService/ServeChampion on the backend, when promoted
    record the outcome       -> a Prefect artifact and a document in MongoDB (pipelines/outcome.py)

Nothing is promoted unless every step before it succeeded: the alias moves at the end of
register(), after the version and its gate decision were recorded. A run whose training data is
the newest version's (no new feedback since) trains nothing and is recorded as skipped, so a
schedule every five minutes does not fill the registry with copies.

Network steps are retried with exponential backoff (Prefect task retries, RETRAINING_RETRIES),
except register(): it is not idempotent (a retry after a half-done registration would add a second
version), so only MLflow's client retries its single HTTP calls there (configure_http).
A failed run ends in a Failed state whose message is the reason, and its outcome is recorded too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from fruitstack.v1 import auth_pb2, auth_pb2_grpc, predictions_pb2, predictions_pb2_grpc
from fruitstack_model.datasets import load_dataset
from fruitstack_model.gate import IncomparableModel
from fruitstack_model.model_store import LoadedModel, load_fetched
from fruitstack_model.registry import Registry, VersionRecord, configure_http
from prefect import flow, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed
from pymongo import DESCENDING, MongoClient
from train import Registration, TrainingResult, fingerprint, register, score_on_holdout, train

from pipelines import outcome as outcomes
from pipelines.data import TrainingData, combine, feedback_docs
from pipelines.outcome import Outcome
from pipelines.settings import FLOW_NAME, Settings

logger = logging.getLogger(__name__)

ARTIFACT_KEY = "retraining-outcome"
# Every task: cache_policy=NO_CACHE, persist_result=False. Models, arrays and settings are passed
# between tasks in memory; hashing them for a cache key would be slow and pointless (every run must
# look at the data afresh), and nothing needs a task's result after the run.


@dataclass(frozen=True)
class Champion:
    record: VersionRecord | None
    model: LoadedModel | None = field(repr=False)
    dataset: str
    newest_version: str | None  # the newest registered version (champion or not) ...
    newest_data_sha256: str | None  # ... and the fingerprint of its training rows


@dataclass(frozen=True)
class Scores:
    metric: str
    candidate: float
    champion: float | None
    note: str  # why the champion has no score, if it has none


@task(name="load the champion", cache_policy=NO_CACHE, persist_result=False)
def load_champion(settings: Settings) -> Champion:
    registry = Registry(settings.tracking_uri, settings.registered_model)
    record = registry.champion()
    versions = registry.versions()
    newest = versions[0] if versions else None
    model = load_fetched(registry.fetch(record.version)) if record is not None else None
    newest_sha = None
    # A newest version a pin held back, once the pin is lifted, is no reason to skip: the gate
    # must get to decide again (it trains on the same rows, and is promoted if it passes).
    held_then_unpinned = (
        newest is not None and bool(newest.gate.get("pinned_version")) and registry.pin() is None
    )
    if newest is not None and not held_then_unpinned:
        info = model.metadata if model is not None and newest.version == model.version else None
        newest_sha = (info or registry.fetch(newest.version).info).get("data_sha256")
    # No champion yet (an empty registry): train.py's default dataset, which model-init trains too.
    dataset = model.metadata["dataset"] if model is not None else "iris"
    return Champion(record, model, dataset, newest.version if newest else None, newest_sha)


@task(name="gather the training data", cache_policy=NO_CACHE, persist_result=False)
def gather_training_data(settings: Settings, dataset_name: str) -> TrainingData:
    client: MongoClient[dict[str, Any]] = MongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        appname="fruitstack-retraining",
    )
    with client:
        # Pages with any feedback, newest first; their labelled rows until max_feedback_rows.
        pages = (
            client[settings.mongodb_database]["prediction_pages"]
            .find({"feedback": {"$exists": True}}, projection={"features": 1, "feedback": 1})
            .sort("end", DESCENDING)
        )
        with pages:
            docs = feedback_docs(pages, limit=settings.max_feedback_rows)
    data = combine(
        load_dataset(dataset_name),
        docs,
        seed=settings.seed,
        holdout=settings.holdout,
        feedback_holdout=settings.feedback_holdout,
    )
    logger.info("training data: %s", data.counts)
    return data


@task(name="train the candidate", cache_policy=NO_CACHE, persist_result=False)
def train_candidate(settings: Settings, data: TrainingData) -> TrainingResult:
    return train(
        data.dataset,
        seed=settings.seed,
        holdout=settings.holdout,
        params=settings.params,
        progress=False,
        rows=data.rows,
    )


@task(name="evaluate candidate and champion on the same data", cache_policy=NO_CACHE, persist_result=False)
def evaluate_on_the_same_data(settings: Settings, result: TrainingResult, champion: Champion) -> Scores:
    metric = settings.gate_metric
    candidate = result.metrics[metric]
    if champion.model is None:
        return Scores(metric, candidate, None, "no champion yet")
    try:
        champion_metrics = score_on_holdout(result)(champion.model)
    except IncomparableModel as exc:
        return Scores(metric, candidate, None, str(exc))
    return Scores(metric, candidate, champion_metrics[metric], "")


@task(name="register and gate", cache_policy=NO_CACHE, persist_result=False)
def register_and_gate(settings: Settings, result: TrainingResult) -> Registration:
    registry = Registry(settings.tracking_uri, settings.registered_model)
    registration = register(
        result, registry, gate_metric=settings.gate_metric, gate_margin=settings.gate_margin
    )
    try:  # from the MLflow run back to the Prefect run that made it; nice to have, never a failure
        registry.client().set_tag(
            registration.run_id, "retraining.flow_run", str(runtime.flow_run.name or "")
        )
    except Exception as exc:
        logger.warning("could not tag MLflow run %s: %s", registration.run_id, exc)
    return registration


@task(name="switch the served model", cache_policy=NO_CACHE, persist_result=False)
def switch_served_model(settings: Settings) -> str:
    """Ask the backend to serve the champion now (the model service would follow it within seconds)."""
    password = settings.backend_password.get_secret_value()
    if not password:
        raise RuntimeError(
            "cannot ask the backend to switch: no password to sign in with "
            "(set RETRAINER_PASSWORD, the backend's retrainer service account's)"
        )
    if settings.backend_ca_file is None:
        channel = grpc.insecure_channel(settings.backend_address)
    else:
        ca = settings.backend_ca_file.read_bytes()
        channel = grpc.secure_channel(settings.backend_address, grpc.ssl_channel_credentials(ca))
    with channel:
        login = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=settings.backend_username, password=password),
            timeout=settings.backend_timeout_s,
        )
        answer = predictions_pb2_grpc.PredictionServiceStub(channel).ServeChampion(
            predictions_pb2.ServeChampionRequest(),
            timeout=settings.backend_timeout_s,
            metadata=(("authorization", f"Bearer {login.access_token}"),),
        )
    return str(answer.current_version)


@task(name="record the outcome", cache_policy=NO_CACHE, persist_result=False)
def record_outcome(settings: Settings, outcome: Outcome) -> None:
    outcomes.save(
        outcome,
        mongodb_uri=settings.mongodb_uri,
        database=settings.mongodb_database,
        timeout_ms=settings.mongodb_timeout_ms,
    )


def _retrying(step: Any, settings: Settings) -> Any:
    return step.with_options(retries=settings.retries, retry_delay_seconds=settings.retry_delays())


@flow(name=FLOW_NAME, description="Retrain on the built-in dataset plus feedback, gate, promote, switch.")
def retrain(trigger: str = "schedule", reason: str = "") -> State[Any]:
    settings = Settings()
    # A stopped registry fails a call within seconds (MLflow's default is 120 s with 7 retries).
    configure_http(timeout_s=30, retries=2)
    outcome = Outcome(
        flow_run_id=str(runtime.flow_run.id or ""),
        flow_run_name=str(runtime.flow_run.name or ""),
        deployment=settings.deployment,
        trigger=trigger,
        reason=reason,
        started_at=datetime.now(UTC),
    )
    try:
        outcome = _run(settings, outcome)
    except Exception as exc:
        outcome = outcome.finished(outcomes.FAILED, f"{type(exc).__name__}: {exc}")
        try:
            _publish(settings, outcome)
        except Exception as unrecorded:  # the run's reason matters more than the record's
            logger.exception("could not record the outcome of a failed run")
            return Failed(message=f"{outcome.detail} (and the outcome was not recorded: {unrecorded})")
        return Failed(message=outcome.detail)
    _publish(settings, outcome)
    said = (
        outcome.detail if outcome.detail.startswith(outcome.result) else f"{outcome.result}: {outcome.detail}"
    )
    return Completed(message=said)


def _run(settings: Settings, outcome: Outcome) -> Outcome:
    champion = _retrying(load_champion, settings)(settings)
    outcome = outcome.with_(
        champion_version=champion.record.version if champion.record else "",
        served_version=champion.record.version if champion.record else "",
        metric=settings.gate_metric,
    )
    data = _retrying(gather_training_data, settings)(settings, champion.dataset)
    outcome = outcome.with_(data=data.counts)
    if champion.newest_data_sha256 == fingerprint(data.rows.x_train, data.rows.y_train):
        return outcome.finished(
            outcomes.SKIPPED,
            f"the training data is unchanged since version {champion.newest_version} "
            f"({data.counts.feedback_train_rows} feedback rows for training); nothing to train",
        )
    result = train_candidate(settings, data)
    scores = evaluate_on_the_same_data(settings, result, champion)
    outcome = outcome.with_(candidate_score=scores.candidate, champion_score=scores.champion)
    registration = register_and_gate(settings, result)
    decision = registration.decision
    outcome = outcome.with_(candidate_version=registration.version, champion_score=decision.champion_score)
    if not decision.promoted:
        return outcome.finished(outcomes.NOT_PROMOTED, decision.reason)
    try:
        served = _retrying(switch_served_model, settings)(settings)
    except Exception as exc:
        raise RuntimeError(
            f"version {registration.version} was promoted, but the backend at {settings.backend_address} "
            f"could not be asked to serve it ({exc}); the model service follows the champion by itself"
        ) from exc
    return outcome.with_(served_version=served).finished(outcomes.PROMOTED, decision.reason)


def _publish(settings: Settings, outcome: Outcome) -> None:
    """The outcome in the Prefect UI, and in MongoDB for the backend (retried: a network step)."""
    create_markdown_artifact(
        outcome.markdown(), key=ARTIFACT_KEY, description=f"{outcome.result}: {outcome.detail}"[:500]
    )
    _retrying(record_outcome, settings)(settings, outcome)
