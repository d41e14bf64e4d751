"""The retraining feature's logic: start runs (on demand, on drift) and assemble the status.

At most one run at a time is Prefect's to enforce: the deployment's concurrency limit (1, enqueue
the newcomer; set by pipelines/__main__.py) holds a run that becomes due while another has the slot
in AwaitingConcurrencySlot and starts it when the slot frees, whichever backend asked. So nothing
asked for is dropped. A trigger made while a run is already waiting to start is merged into that
run instead of queueing another: that run has not read its data yet, so it serves the ask (and
a burst of drift events or clicks makes one run, not a queue of identical ones).
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from backend.exceptions import FailedPrecondition, FruitstackError, InvalidArgument, Unavailable
from backend.messages import name_list, shorten
from backend.mongo import Document
from backend.monitoring.monitor import DriftCheck
from backend.retraining.prefect_api import RUNNING_STATES, Deployment, FlowRun, PrefectApi
from backend.retraining.repository import RetrainingRepository

logger = logging.getLogger(__name__)

ON_DEMAND = "on demand"
DRIFT = "drift"
# Prefect's name for a run held back by the deployment's concurrency limit (state type SCHEDULED).
AWAITING_SLOT = "AwaitingConcurrencySlot"
MAX_REASON_CHARS = 200
DEFAULT_RUNS = 10
MAX_RUNS = 50


@dataclass(frozen=True)
class Run:
    """A flow run of the deployment, with the outcome it recorded (None until it has)."""

    id: str
    name: str
    trigger: str
    reason: str
    state: str
    state_message: str
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    outcome: Document | None


@dataclass(frozen=True)
class Asked:
    """What a trigger got: the run that will serve it, the run going (if any), whether it merged."""

    run: Run
    going: Run | None
    merged: bool


@dataclass(frozen=True)
class Status:
    deployment: str
    prefect_reachable: bool
    prefect_error: str
    schedule_interval_s: float
    next_run_at: datetime | None
    runs: list[Run]
    history_error: str


def check_reason(raw: str) -> str:
    reason = raw.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidArgument(f"reason must be at most {MAX_REASON_CHARS} characters, got {len(reason)}")
    if any(unicodedata.category(c).startswith("C") for c in reason):
        raise InvalidArgument("reason must be plain text, without control or invisible characters")
    return reason


def resolve_limit(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(f"limit must not be negative, got {requested}")
    return min(requested or DEFAULT_RUNS, MAX_RUNS)


def _run(flow_run: FlowRun, outcome: Document | None) -> Run:
    params = flow_run.parameters
    return Run(
        id=flow_run.id,
        name=flow_run.name,
        trigger=str(params.get("trigger") or "schedule"),
        reason=str(params.get("reason") or ""),
        state=flow_run.state_name,
        state_message=flow_run.state_message,
        scheduled_at=flow_run.expected_start_time,
        started_at=flow_run.start_time,
        finished_at=flow_run.end_time,
        outcome=outcome,
    )


def _waiting_to_start(run: FlowRun, now: datetime) -> bool:
    """A SCHEDULED-type run that will start as soon as it can, not one the schedule set for later."""
    if run.state_name == AWAITING_SLOT or not run.auto_scheduled:
        return True
    return run.expected_start_time is not None and run.expected_start_time <= now


def _newest_first(run: FlowRun) -> datetime:
    return run.expected_start_time or run.start_time or datetime.min.replace(tzinfo=UTC)


def _recorded_run(doc: Document) -> Run:
    """A run known only from its recorded outcome (Prefect did not answer)."""
    return Run(
        id=str(doc["_id"]),
        name=str(doc.get("flow_run_name") or ""),
        trigger=str(doc.get("trigger") or ""),
        reason=str(doc.get("reason") or ""),
        state="Failed" if doc.get("result") == "failed" else "Completed",
        state_message=str(doc.get("detail") or ""),
        scheduled_at=None,
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        outcome=doc,
    )


class Retrainer:
    def __init__(self, *, api: PrefectApi, repository: RetrainingRepository, deployment: str) -> None:
        self._api = api
        self._repository = repository
        self.deployment = deployment

    async def _deployment(self) -> Deployment:
        found = await self._api.deployment(self.deployment)
        if found is None:
            raise FailedPrecondition(
                f"Prefect at {self._api.url} has no deployment {self.deployment!r}; the retraining "
                "runner (python -m pipelines) creates it when it starts"
            )
        return found

    async def retrain(self, *, trigger: str, reason: str) -> Asked:
        """Ask Prefect for a run now, or merge into the one already waiting to start."""
        reason = check_reason(reason)
        deployment = await self._deployment()
        going = await self._api.flow_runs(deployment, limit=1, state_types=RUNNING_STATES)
        going_run = _run(going[0], None) if going else None
        scheduled = await self._api.flow_runs(
            deployment, limit=20, state_types=("SCHEDULED",), sort="EXPECTED_START_TIME_ASC"
        )
        now = datetime.now(UTC)
        waiting = [r for r in scheduled if _waiting_to_start(r, now)]
        if waiting:
            logger.info(
                "retraining: %s trigger (%s) merged into run %s, waiting to start",
                trigger,
                reason or "no reason",
                waiting[0].name,
            )
            return Asked(_run(waiting[0], None), going_run, merged=True)
        created = await self._api.create_flow_run(
            deployment, parameters={"trigger": trigger, "reason": reason}, tags=[trigger.replace(" ", "-")]
        )
        logger.info("retraining: %s run %s asked for (%s)", trigger, created.name, reason or "no reason")
        return Asked(_run(created, None), going_run, merged=False)

    async def on_drift_event(self, check: DriftCheck) -> None:
        """Monitor calls this when a drift check turns to drift: ask for a run, never fail the check."""
        reason = shorten(
            f"drift in {name_list(list(check.drifted))} (score {check.score:.2f} over "
            f"{check.window_size} predictions of version {check.model_version})",
            MAX_REASON_CHARS,
        )
        try:
            await self.retrain(trigger=DRIFT, reason=reason)
        except FruitstackError as exc:
            logger.warning("drift seen, but no retraining run could be asked for: %s", exc.message)

    async def status(self, *, limit: int, time_left: float | None = None) -> Status:
        limit = resolve_limit(limit)
        prefect_error = history_error = ""
        reachable = True
        interval_s = 0.0
        next_run_at = None
        flow_runs: list[FlowRun] = []
        try:
            deployment = await self._deployment()
            interval_s = 0.0 if deployment.paused else deployment.interval_s
            # Runs due later are the schedule's; the ones due first are how far it has got.
            waiting = await self._api.flow_runs(
                deployment, limit=20, state_types=("SCHEDULED",), sort="EXPECTED_START_TIME_ASC"
            )
            scheduled = [
                r
                for r in waiting
                if r.auto_scheduled and r.expected_start_time and r.state_name != AWAITING_SLOT
            ]
            if scheduled and interval_s:
                next_run_at = scheduled[0].expected_start_time
            # Runs asked for, and scheduled ones the concurrency limit holds back: the queue.
            asked = [r for r in waiting if not r.auto_scheduled or r.state_name == AWAITING_SLOT]
            done = await self._api.flow_runs(deployment, limit=limit, not_state_types=("SCHEDULED",))
            flow_runs = sorted([*asked, *done], key=_newest_first, reverse=True)[:limit]
        except FailedPrecondition as exc:  # Prefect answered: it has no such deployment
            prefect_error = exc.message
        except Unavailable as exc:
            prefect_error, reachable = exc.message, False
        try:
            if flow_runs:
                recorded = await self._repository.by_ids([r.id for r in flow_runs], time_left=time_left)
                runs = [_run(r, recorded.get(r.id)) for r in flow_runs]
            elif prefect_error:
                docs = await self._repository.recent(limit=limit, time_left=time_left)
                runs = [_recorded_run(d) for d in docs]
            else:
                runs = []
        except FruitstackError as exc:
            history_error = exc.message
            runs = [_run(r, None) for r in flow_runs]
        return Status(
            deployment=self.deployment,
            prefect_reachable=reachable,
            prefect_error=prefect_error,
            schedule_interval_s=interval_s,
            next_run_at=next_run_at,
            runs=runs,
            history_error=history_error,
        )
