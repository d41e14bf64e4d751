"""The monitoring feature's logic: drift reports and checks, feedback, live accuracy, counts (no gRPC here).

The reference of a drift report is the summary of the training data that `bento/train.py` stores
with each model version (the model service's `/model` answer, `reference`). The window is read from
`drift_buckets` plus what this process has summarised but not written yet, so a report over a
million predictions merges a few hundred sketches and never reads a million documents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from async_lru import alru_cache

from backend.exceptions import FailedPrecondition, FruitstackError, InvalidArgument, NotFound
from backend.messages import name_list, shorten
from backend.mongo import Document
from backend.monitoring.drift import DriftResult, Summary, compare
from backend.monitoring.prediction_log import BULK, PredictionLog
from backend.monitoring.repository import FeedbackResult, MonitoringRepository, PredictionRef
from backend.prediction import ModelInfo, Predictor

logger = logging.getLogger(__name__)

# A feedback for a prediction still on its way to MongoDB waits this long for it.
_FEEDBACK_WAIT_S = 3.0
# Without a configured cap (DRIFT_MAX_WINDOW_PREDICTIONS in the server): a sanity bound only.
_MAX_WINDOW_PREDICTIONS = 100_000_000
_MAX_BINS = 1440


@dataclass(frozen=True)
class DriftReport:
    model_version: str
    window_start: datetime | None
    window_end: datetime | None
    window_size: int
    reference_size: int
    result: DriftResult
    computed_at: datetime


@dataclass(frozen=True)
class _Window:
    """What a drift report is over: the newest `last` predictions, or those in [since, until]."""

    last: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def _report_key(info: ModelInfo, reference: Summary, window: _Window) -> Hashable:
    # The same version over the same window is the same report (the reference follows the version).
    return (info.version, window)


@dataclass(frozen=True)
class DriftCheck:
    at: datetime
    model_version: str
    score: float
    drift: bool
    window_size: int
    drifted: tuple[str, ...]


@dataclass(frozen=True)
class VersionAccuracy:
    model_version: str
    labelled: int
    correct: int


@dataclass(frozen=True)
class Bin:
    start: datetime
    a: int  # predictions, or labelled
    b: int  # bulk rows, or correct


class Monitor:
    def __init__(
        self,
        *,
        repository: MonitoringRepository,
        log: PredictionLog,
        predictor: Predictor,
        window_predictions: int,
        alpha: float,
        check_interval_s: float,
        on_drift_event: Callable[[DriftCheck], Awaitable[None]] | None = None,
        report_cache_s: float = 0.0,
        max_window_predictions: int = _MAX_WINDOW_PREDICTIONS,
        max_window_s: float | None = None,
    ) -> None:
        self._repository = repository
        # Each report reads the window's summaries and a distinct window is a cache miss, so a
        # caller choosing windows freely must not choose the whole retained log every time.
        self._max_window_predictions = max_window_predictions
        self._max_window_s = max_window_s
        self._on_drift_event = on_drift_event  # e.g. ask for a retraining run
        self._log = log
        self._predictor = predictor
        self._window_predictions = window_predictions
        self._alpha = alpha
        self._check_interval_s = check_interval_s
        self._references: dict[str, Summary] = {}  # by model version: they never change
        self._versions: dict[str, ModelInfo] = {}  # versions not in service that reports asked for
        self.retention_s = repository.retention_s
        # Every open Monitoring tab asks for the same report every few seconds, and a report reads
        # MongoDB and runs a test per feature: identical requests in flight share one computation, and
        # its result serves for report_cache_s (async-lru; a failure is not kept).
        self._report = self._compute_report
        if report_cache_s > 0:
            self._report = alru_cache(maxsize=64, ttl=report_cache_s, key=_report_key)(self._compute_report)

    # ---- drift --------------------------------------------------------------------------------

    async def _reference(self, info: ModelInfo) -> Summary:
        summary = self._references.get(info.version)
        if summary is None:
            if not info.reference:
                raise FailedPrecondition(
                    f"model version {info.version} has no summary of its training data to compare with; "
                    "train it again with this release's bento/train.py"
                )
            summary = self._references[info.version] = Summary.from_doc(info.reference)
        return summary

    async def _version_info(self, version: str, time_left: float | None) -> ModelInfo:
        info = self._versions.get(version)
        if info is None:  # a version's features and training data never change
            info = self._versions[version] = await self._predictor.version_info(version, time_left=time_left)
        return info

    async def drift_report(
        self,
        *,
        last_predictions: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        model_version: str = "",
        time_left: float | None = None,
    ) -> DriftReport:
        """Window: the newest last_predictions, or the range [since, until]; neither: the default size.

        Of the inputs served by model_version (empty: the version in service), against its training data.
        """
        cap = self._max_window_predictions
        if last_predictions is not None and not 0 < last_predictions <= cap:
            raise InvalidArgument(
                f"last_predictions must be 1 to {cap:,} (the server's largest drift window), "
                f"got {last_predictions}"
            )
        if since is not None and until is not None and since > until:
            raise InvalidArgument("time_range.start must not be after time_range.end")
        self._check_span(since, until)
        info = await self._predictor.current_model(time_left=time_left)
        if model_version and model_version != info.version:
            info = await self._version_info(model_version, time_left)
        reference = await self._reference(info)
        if since is None and until is None:
            window = _Window(last=last_predictions or self._window_predictions)
        else:
            window = _Window(since=since, until=until)
        return await self._report(info, reference, window)

    def _check_span(self, since: datetime | None, until: datetime | None) -> None:
        longest = self._max_window_s
        if longest is None or (since is None and until is None):
            return
        if since is None:
            raise InvalidArgument(
                f"time_range.start is required: a drift report covers at most {longest:,.0f} s"
            )
        span_s = ((until or datetime.now(UTC)) - since).total_seconds()
        if span_s > longest:
            raise InvalidArgument(
                f"time_range covers {span_s:,.0f} s; a drift report covers at most {longest:,.0f} s "
                "(the server's longest drift window): ask for a shorter range"
            )

    async def _compute_report(self, info: ModelInfo, reference: Summary, window: _Window) -> DriftReport:
        if window.last is not None:
            docs = await self._repository.buckets(model_version=info.version, newest_rows=window.last)
            summary = self._log.unflushed(info.version)
        else:
            docs = await self._repository.buckets(
                model_version=info.version, since=window.since, until=window.until
            )
            # Open buckets hold rows from their start to now: they belong to a range unless it ended
            # before they began.
            summary = self._log.unflushed(info.version, started_by=window.until)
        for doc in docs:
            summary.merge(Summary.from_doc(doc))
        result = compare(reference, summary, features=info.feature_names, alpha=self._alpha)
        starts = [d["start"] for d in docs]
        ends = [d["end"] for d in docs]
        return DriftReport(
            model_version=info.version,
            window_start=min(starts) if starts else None,
            window_end=max(ends) if ends else None,
            window_size=summary.rows,
            reference_size=reference.rows,
            result=result,
            computed_at=datetime.now(UTC),
        )

    async def check_drift(self) -> DriftCheck | None:
        """One periodic check over the default window; records a drift event when the verdict turns."""
        try:
            report = await self.drift_report()
        except FailedPrecondition:
            return None  # nothing to compare with: not a fault worth a log line every minute
        if report.window_size == 0:
            return None
        result = report.result
        check = DriftCheck(
            at=report.computed_at,
            model_version=report.model_version,
            score=result.score,
            drift=result.drift,
            window_size=report.window_size,
            drifted=tuple(result.drifted),
        )
        previous = await self._repository.last_check(model_version=report.model_version)
        event = check.drift and (previous is None or not previous.get("drift"))
        await self._repository.insert_check({**_check_doc(check), "event": event})
        if event:
            logger.warning(
                "drift: model %s, %s (score %.2f over %d predictions)",
                check.model_version,
                name_list(list(check.drifted)),
                check.score,
                check.window_size,
            )
            if self._on_drift_event is not None:
                await self._on_drift_event(check)
        return check

    async def run(self) -> None:
        """Check drift every check interval, for ever; a failed check is logged and retried next time."""
        while True:
            await asyncio.sleep(self._check_interval_s)
            try:
                await self.check_drift()
            except FruitstackError as exc:
                logger.info("drift check skipped: %s", exc.message)

    async def recent_checks(self, *, limit: int = 60, events_only: bool = False) -> list[DriftCheck]:
        docs = await self._repository.recent_checks(limit=limit, events_only=events_only)
        return [_check_from_doc(d) for d in docs]

    # ---- feedback -----------------------------------------------------------------------------

    async def record_feedback(self, *, prediction_id: str, label: str) -> FeedbackResult:
        ref = _prediction_ref(prediction_id)
        if not label:
            raise InvalidArgument("label must not be empty; send one of the model's classes")
        if self._log.holds(ref):  # still on its way to MongoDB: give the log a moment
            await self._log.written(ref, timeout_s=_FEEDBACK_WAIT_S)
        # One write when all is well; only a refusal reads again, to say why.
        result = await self._repository.record_feedback(ref=ref, label=label)
        if result is not None:
            return result
        classes = await self._repository.classes_of(ref=ref)
        if classes is not None and label not in classes:
            raise InvalidArgument(
                f"label {shorten(label)!r} is not a class of the model that made this prediction "
                f"(classes: {name_list(classes, limit=20)})"
            )
        raise NotFound(
            f"no logged prediction {prediction_id!r} (unknown, expired after the log's retention, "
            "or never logged)"
        )

    # ---- accuracy and counts ------------------------------------------------------------------

    async def live_accuracy(
        self, *, since: datetime, until: datetime, interval_s: int
    ) -> tuple[list[VersionAccuracy], list[Bin]]:
        bins = _empty_bins(since, until, interval_s)
        per_version: dict[str, list[int]] = {}
        for doc in await self._repository.accuracy_bins():
            totals = per_version.setdefault(str(doc["model_version"]), [0, 0])
            totals[0] += int(doc.get("labelled", 0))
            totals[1] += int(doc.get("correct", 0))
            _add(
                bins,
                since,
                interval_s,
                _aware(doc["start"]),
                int(doc.get("labelled", 0)),
                int(doc.get("correct", 0)),
            )
        versions = [VersionAccuracy(v, n, c) for v, (n, c) in sorted(per_version.items(), key=_version_order)]
        return versions, [Bin(start, a, b) for start, (a, b) in bins.items()]

    async def prediction_counts(self, *, since: datetime, until: datetime, interval_s: int) -> list[Bin]:
        bins = _empty_bins(since, until, interval_s)
        for doc in await self._repository.bucket_counts(since=since, until=until):
            rows = int(doc["served"] if "served" in doc else doc["rows"])
            single, bulk = (0, rows) if doc.get("source") == BULK else (rows, 0)
            _add(bins, since, interval_s, _aware(doc["start"]), single, bulk)
        return [Bin(start, a, b) for start, (a, b) in bins.items()]


def time_range(
    since: datetime | None, until: datetime | None, interval_s: int, *, default_span_s: int = 3600
) -> tuple[datetime, datetime, int]:
    """A checked (since, until, interval) for the over-time calls: defaults to the last hour by minute."""
    until = until or datetime.now(UTC)
    try:
        since = since or until - timedelta(seconds=default_span_s)
    except OverflowError:  # an end in the first hour of year 1 (an INTERNAL crash, found by tests/fuzz)
        raise InvalidArgument(
            f"time_range.end is less than {default_span_s} s after 0001-01-01, so the default start "
            f"({default_span_s} s before it) is no time; give time_range.start"
        ) from None
    interval = int(interval_s or 60)
    if interval < 1:
        raise InvalidArgument(f"interval_s must be positive, got {interval_s}")
    if since >= until:
        raise InvalidArgument("time_range.start must be before time_range.end")
    if (until - since).total_seconds() / interval > _MAX_BINS:
        raise InvalidArgument(
            f"at most {_MAX_BINS} bins per call; choose a larger interval_s or a shorter range"
        )
    return since, until, interval


def _prediction_ref(raw: str) -> PredictionRef:
    ref = PredictionRef.parse(raw)
    if ref is None:
        raise InvalidArgument(
            f"prediction_id {shorten(raw)!r} is not a prediction id (24 hexadecimal digits, a dash and "
            "a number, from a PredictResponse)"
        )
    return ref


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _empty_bins(since: datetime, until: datetime, interval_s: int) -> dict[datetime, list[int]]:
    count = int((until - since).total_seconds() // interval_s) + 1
    return {since + timedelta(seconds=i * interval_s): [0, 0] for i in range(count)}


def _add(
    bins: dict[datetime, list[int]], since: datetime, interval_s: int, at: datetime, a: int, b: int
) -> None:
    index = int((at - since).total_seconds() // interval_s)
    if 0 <= index < len(bins):
        key = since + timedelta(seconds=index * interval_s)
        bins[key][0] += a
        bins[key][1] += b


def _version_order(item: tuple[str, list[int]]) -> tuple[int, str]:
    version = item[0]
    return (int(version), "") if version.isdigit() else (0, version)


def _check_doc(check: DriftCheck) -> Document:
    return {
        "at": check.at,
        "model_version": check.model_version,
        "score": check.score,
        "drift": check.drift,
        "window_size": check.window_size,
        "drifted": list(check.drifted),
    }


def _check_from_doc(doc: Document) -> DriftCheck:
    return DriftCheck(
        at=_aware(doc["at"]),
        model_version=str(doc["model_version"]),
        score=float(doc["score"]),
        drift=bool(doc["drift"]),
        window_size=int(doc["window_size"]),
        drifted=tuple(str(x) for x in doc.get("drifted") or ()),
    )
