"""What a retraining run did, recorded where people look: the Prefect UI (an artifact of the run)
and the backend's MongoDB (collection `retraining_runs`, which the Model tab reads through the
backend's RetrainingService, also while Prefect is down).

One document per flow run, `_id` the flow run's id:

    {_id, flow_run_name, deployment, trigger, reason, started_at, finished_at, duration_s,
     result: promoted | not promoted | skipped | failed, detail (why, in words),
     metric, candidate_score, champion_score, candidate_version, champion_version, served_version,
     data: {dataset, builtin_rows, feedback_found, unusable_rows, duplicate_rows,
            feedback_train_rows, feedback_eval_rows, train_rows, eval_rows}}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient

from pipelines.data import DataCounts

RUNS = "retraining_runs"

PROMOTED = "promoted"
NOT_PROMOTED = "not promoted"
SKIPPED = "skipped"
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    flow_run_id: str
    flow_run_name: str
    deployment: str
    trigger: str
    reason: str
    started_at: datetime
    result: str = ""
    detail: str = ""
    metric: str = ""
    candidate_score: float | None = None
    champion_score: float | None = None
    candidate_version: str = ""
    champion_version: str = ""
    served_version: str = ""
    data: DataCounts | None = None
    finished_at: datetime | None = field(default=None)

    def with_(self, **changes: Any) -> Outcome:
        return replace(self, **changes)

    def finished(self, result: str, detail: str) -> Outcome:
        return replace(self, result=result, detail=detail, finished_at=datetime.now(UTC))

    @property
    def duration_s(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return round((end - self.started_at).total_seconds(), 3)

    def doc(self) -> dict[str, Any]:
        return {
            "_id": self.flow_run_id,
            "flow_run_name": self.flow_run_name,
            "deployment": self.deployment,
            "trigger": self.trigger,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": self.duration_s,
            "result": self.result,
            "detail": self.detail,
            "metric": self.metric,
            "candidate_score": self.candidate_score,
            "champion_score": self.champion_score,
            "candidate_version": self.candidate_version,
            "champion_version": self.champion_version,
            "served_version": self.served_version,
            "data": None if self.data is None else self.data.doc(),
        }

    def markdown(self) -> str:
        """The run's artifact in the Prefect UI."""

        def score(value: float | None) -> str:
            return "" if value is None else f"{value:.4f}"

        lines = [
            f"## Retraining: {self.result}",
            "",
            self.detail,
            "",
            "| | |",
            "| --- | --- |",
            f"| trigger | {self.trigger}{f' ({self.reason})' if self.reason else ''} |",
            f"| duration | {self.duration_s:.1f} s |",
            f"| metric | {self.metric} |",
            f"| candidate | {self.candidate_version or '(not registered)'}: {score(self.candidate_score)} |",
            f"| champion | {self.champion_version or '(none)'}: {score(self.champion_score)} |",
            f"| served after the run | {self.served_version} |",
        ]
        if self.data is not None:
            lines += [f"| {name.replace('_', ' ')} | {value} |" for name, value in self.data.doc().items()]
        return "\n".join(lines) + "\n"


def save(outcome: Outcome, *, mongodb_uri: str, database: str, timeout_ms: int) -> None:
    """Insert or replace the run's document (idempotent, so the step can be retried)."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, appname="fruitstack-retraining"
    )
    with client:
        doc = outcome.doc()
        client[database][RUNS].replace_one({"_id": doc["_id"]}, doc, upsert=True)
