"""RetrainingService: fruitstack.v1 messages in, Retrainer calls, messages out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fruitstack.v1 import retraining_pb2, retraining_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from backend.mongo import Document
from backend.retraining.retrainer import ON_DEMAND, Retrainer, Run

_Context = aio.ServicerContext[Any, Any]

_DATA_FIELDS = (
    "builtin_rows",
    "feedback_found",
    "unusable_rows",
    "duplicate_rows",
    "feedback_train_rows",
    "feedback_eval_rows",
    "train_rows",
    "eval_rows",
)


class RetrainingServicer(retraining_pb2_grpc.RetrainingServiceServicer):
    def __init__(self, retrainer: Retrainer) -> None:
        self._retrainer = retrainer

    async def Retrain(
        self, request: retraining_pb2.RetrainRequest, context: _Context
    ) -> retraining_pb2.RetrainResponse:
        asked = await self._retrainer.retrain(trigger=ON_DEMAND, reason=request.reason)
        response = retraining_pb2.RetrainResponse(run=_run(asked.run), merged=asked.merged)
        if asked.going is not None:
            response.running.CopyFrom(_run(asked.going))
        return response

    async def GetRetrainingStatus(
        self, request: retraining_pb2.GetRetrainingStatusRequest, context: _Context
    ) -> retraining_pb2.GetRetrainingStatusResponse:
        status = await self._retrainer.status(limit=request.limit, time_left=context.time_remaining())
        response = retraining_pb2.GetRetrainingStatusResponse(
            deployment=status.deployment,
            prefect_reachable=status.prefect_reachable,
            prefect_error=status.prefect_error,
            schedule_interval_s=status.schedule_interval_s,
            runs=[_run(r) for r in status.runs],
            history_error=status.history_error,
        )
        _set(response.next_run_at, status.next_run_at)
        return response


def _set(field: Timestamp, at: datetime | None) -> None:
    if at is not None:
        field.FromDatetime(at)


def _run(run: Run) -> retraining_pb2.RetrainingRun:
    message = retraining_pb2.RetrainingRun(
        id=run.id,
        name=run.name,
        trigger=run.trigger,
        reason=run.reason,
        state=run.state,
        state_message=run.state_message,
    )
    _set(message.scheduled_at, run.scheduled_at)
    _set(message.started_at, run.started_at)
    _set(message.finished_at, run.finished_at)
    if run.outcome is not None:
        message.outcome.CopyFrom(_outcome(run.outcome))
    return message


def _outcome(doc: Document) -> retraining_pb2.RetrainingOutcome:
    data = doc.get("data") or {}
    outcome = retraining_pb2.RetrainingOutcome(
        result=str(doc.get("result") or ""),
        detail=str(doc.get("detail") or ""),
        metric=str(doc.get("metric") or ""),
        candidate_version=str(doc.get("candidate_version") or ""),
        champion_version=str(doc.get("champion_version") or ""),
        served_version=str(doc.get("served_version") or ""),
        duration_s=float(doc.get("duration_s") or 0.0),
        data=retraining_pb2.TrainingData(
            dataset=str(data.get("dataset") or ""), **{k: int(data.get(k) or 0) for k in _DATA_FIELDS}
        ),
    )
    for name in ("candidate_score", "champion_score"):
        if doc.get(name) is not None:
            setattr(outcome, name, float(doc[name]))
    return outcome
