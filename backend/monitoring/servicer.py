"""MonitoringService: fruitstack.v1 messages in, Monitor calls, messages out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fruitstack.v1 import monitoring_pb2, monitoring_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from backend.exceptions import FruitstackError, InvalidArgument
from backend.monitoring.drift import Histogram
from backend.monitoring.monitor import DriftCheck, Monitor, time_range
from backend.monitoring.prediction_log import PredictionLog
from backend.prediction.versions import parse_version

_Context = aio.ServicerContext[Any, Any]


class MonitoringServicer(monitoring_pb2_grpc.MonitoringServiceServicer):
    def __init__(self, monitor: Monitor, log: PredictionLog) -> None:
        self._monitor = monitor
        self._log = log

    async def RecordFeedback(
        self, request: monitoring_pb2.RecordFeedbackRequest, context: _Context
    ) -> monitoring_pb2.RecordFeedbackResponse:
        result = await self._monitor.record_feedback(prediction_id=request.prediction_id, label=request.label)
        return monitoring_pb2.RecordFeedbackResponse(
            prediction_id=request.prediction_id,
            label=request.label,
            predicted_label=result.predicted_label,
            correct=result.correct,
            model_version=result.model_version,
            replaced=result.replaced,
        )

    async def GetDriftReport(
        self, request: monitoring_pb2.GetDriftReportRequest, context: _Context
    ) -> monitoring_pb2.GetDriftReportResponse:
        window = request.WhichOneof("window")
        since = until = None
        if window == "time_range":
            since, until = _times(request.time_range)
        report = await self._monitor.drift_report(
            last_predictions=request.last_predictions if window == "last_predictions" else None,
            since=since,
            until=until,
            model_version=parse_version(request.model_version),
            time_left=context.time_remaining(),
        )
        result = report.result
        message = monitoring_pb2.DriftReport(
            model_version=report.model_version,
            window_size=report.window_size,
            reference_size=report.reference_size,
            drift=result.drift,
            alpha=result.alpha,
            features=[
                monitoring_pb2.FeatureDrift(
                    feature=f.feature,
                    test=f.test,
                    statistic=f.statistic,
                    threshold=f.threshold,
                    drift=f.drift,
                    window_size=f.window_size,
                    reference_size=f.reference_size,
                    reference=_histogram(f.reference),
                    window=_histogram(f.window),
                )
                for f in result.features
            ],
        )
        if result.labels is not None:
            labels = result.labels
            message.labels.CopyFrom(
                monitoring_pb2.LabelDrift(
                    test=labels.test,
                    statistic=labels.statistic,
                    threshold=labels.threshold,
                    drift=labels.drift,
                    window_counts=labels.window_counts,
                    reference_shares=labels.reference_shares,
                )
            )
        _set(message.window_start, report.window_start)
        _set(message.window_end, report.window_end)
        _set(message.computed_at, report.computed_at)
        return monitoring_pb2.GetDriftReportResponse(report=message)

    async def GetLiveAccuracy(
        self, request: monitoring_pb2.GetLiveAccuracyRequest, context: _Context
    ) -> monitoring_pb2.GetLiveAccuracyResponse:
        since, until, interval = _range(request.time_range, request.interval_s)
        versions, bins = await self._monitor.live_accuracy(since=since, until=until, interval_s=interval)
        response = monitoring_pb2.GetLiveAccuracyResponse(
            versions=[
                monitoring_pb2.VersionAccuracy(
                    model_version=v.model_version,
                    labelled=v.labelled,
                    correct=v.correct,
                    accuracy=v.correct / v.labelled if v.labelled else 0.0,
                )
                for v in versions
            ]
        )
        for b in bins:
            point = response.over_time.add(labelled=b.a, correct=b.b)
            point.start.FromDatetime(b.start)
        return response

    async def GetPredictionCounts(
        self, request: monitoring_pb2.GetPredictionCountsRequest, context: _Context
    ) -> monitoring_pb2.GetPredictionCountsResponse:
        since, until, interval = _range(request.time_range, request.interval_s)
        response = monitoring_pb2.GetPredictionCountsResponse()
        for b in await self._monitor.prediction_counts(since=since, until=until, interval_s=interval):
            point = response.points.add(predictions=b.a, bulk_rows=b.b)
            point.start.FromDatetime(b.start)
        return response

    async def GetMonitoringStatus(
        self, request: monitoring_pb2.GetMonitoringStatusRequest, context: _Context
    ) -> monitoring_pb2.GetMonitoringStatusResponse:
        stats = self._log.stats()
        response = monitoring_pb2.GetMonitoringStatusResponse(
            logged=stats.logged,
            dropped=stats.dropped,
            queued=stats.queued,
            retention_s=self._monitor.retention_s,
        )
        try:  # the counters must show exactly when MongoDB is down, so its part may fail alone
            checks = await self._monitor.recent_checks()
            events = await self._monitor.recent_checks(limit=20, events_only=True)
        except FruitstackError as exc:
            response.history_error = exc.message
        else:
            response.recent_checks.extend(_check(c) for c in checks)
            response.drift_events.extend(_check(c) for c in events)
        _set(response.last_dropped_at, stats.last_dropped_at)
        return response


def _time(field: Timestamp, name: str) -> datetime:
    try:
        return field.ToDatetime(tzinfo=UTC)
    except ValueError:
        # protobuf refuses nanos outside 0-999,999,999 and seconds outside years 1-9999; its message
        # misstates the nanos range, so the client gets ours (this was an INTERNAL crash, found by
        # tests/fuzz).
        raise InvalidArgument(
            f"{name} is not a valid time (seconds {field.seconds}, nanos {field.nanos}): it must lie in "
            "the years 1 to 9999, with nanos from 0 to 999,999,999"
        ) from None


def _times(field: monitoring_pb2.TimeRange) -> tuple[datetime | None, datetime | None]:
    """The range's start and end; None for an end that is unset."""
    start = _time(field.start, "time_range.start") if field.HasField("start") else None
    end = _time(field.end, "time_range.end") if field.HasField("end") else None
    return start, end


def _range(field: monitoring_pb2.TimeRange, interval_s: int) -> tuple[datetime, datetime, int]:
    return time_range(*_times(field), interval_s)


def _set(field: Timestamp, value: datetime | None) -> None:
    if value is not None:
        field.FromDatetime(value)


def _histogram(histogram: Histogram) -> monitoring_pb2.Histogram:
    return monitoring_pb2.Histogram(edges=histogram.edges, fractions=histogram.fractions)


def _check(check: DriftCheck) -> monitoring_pb2.DriftCheck:
    message = monitoring_pb2.DriftCheck(
        model_version=check.model_version,
        score=check.score,
        drift=check.drift,
        window_size=check.window_size,
        drifted=check.drifted,
    )
    message.at.FromDatetime(check.at)
    return message
