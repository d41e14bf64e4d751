"""The prediction log: every Predict recorded off the request path, and drift summaries of all served rows.

`record()` only appends the prediction to an open *page* in memory and returns the prediction's id:
a prediction never waits for MongoDB and never fails because of it. A page gathers the records of
one model version column by column (MongoDB's bucket pattern, which its own time-series collections
use inside) and is written as one `prediction_pages` document when it holds `page_size` records or
is `linger_s` old (a second: feedback for a prediction not written yet waits for its page, and on
nx-27017, whose TTL emulation reads the whole collection on every read of it, each page costs every
later read). One task writes the pages. When MongoDB is slow or down, or `queue_size` records
are waiting, records are dropped and counted (`dropped`, shown by GetMonitoringStatus and warned
about once per burst), never blocked on; logging resumes by itself when MongoDB answers again.

Why pages rather than a document per prediction: on this project's 2-core machine the MongoDB server
(nx-27017, a Python server) spent 0.098 ms of CPU per record inserted as its own document, even in
batches of 500, and 0.0095 ms per record in a page of 500: the difference was most of what logging
cost a prediction. A real MongoDB also keeps 500 times fewer documents and index entries. The id of
a prediction names its page and its place in it (`PredictionRef`).

The same task folds every logged row into the drift summary of its model version. PredictBatch
chunks are folded in directly (`summarise_bulk`): a uniform sample of at most `BULK_SAMPLE_ROWS` rows
of each chunk enters the sketches (sketching all of a million rows cost ~150 ms, a third of the
stream's time; a sample of 5,000 measures each CDF to about 1%, the sketch's own error), and every
row is counted. A million-row stream thus becomes a few sketches, never a million documents. A
summary is written as one `drift_buckets` document every `bucket_rows` rows or `bucket_s` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
from bson import ObjectId

from backend.burst_log import BurstLog
from backend.exceptions import FruitstackError
from backend.mongo import Document
from backend.monitoring.drift import Summary
from backend.monitoring.repository import MonitoringRepository, PredictionRef

logger = logging.getLogger(__name__)

SINGLE, BULK = "predict", "bulk"
BULK_SAMPLE_ROWS = 5_000


class _Page:
    """The records of one model version not written yet, column by column, as they will be stored."""

    def __init__(self, model_version: str, feature_names: Sequence[str], classes: Sequence[str]) -> None:
        self.id = ObjectId()
        self.model_version = model_version
        self.feature_names = tuple(feature_names)
        self.classes = tuple(classes)
        self._feature_set, self._class_set = frozenset(self.feature_names), frozenset(self.classes)
        self.start = datetime.now(UTC)
        self._t0 = time.time()
        self.opened = time.monotonic()
        self.offsets_ms: list[int] = []
        self.features: list[list[float]] = [[] for _ in self.feature_names]
        self.labels: list[str] = []
        self.probabilities: list[list[float]] = [[] for _ in self.classes]
        self.latency_ms: list[float] = []

    def __len__(self) -> int:
        return len(self.labels)

    def fits(self, features: Mapping[str, float], probabilities: Mapping[str, float]) -> bool:
        return features.keys() == self._feature_set and probabilities.keys() == self._class_set

    def add(
        self, features: Mapping[str, float], label: str, probabilities: Mapping[str, float], latency_ms: float
    ) -> int:
        self.offsets_ms.append(round((time.time() - self._t0) * 1000))
        for column, name in zip(self.features, self.feature_names, strict=True):
            column.append(features[name])
        for column, name in zip(self.probabilities, self.classes, strict=True):
            column.append(probabilities[name])
        self.labels.append(label)
        self.latency_ms.append(round(latency_ms, 3))
        return len(self.labels) - 1

    def to_doc(self) -> Document:
        return {
            "_id": self.id,
            "model_version": self.model_version,
            "start": self.start,
            "end": self.start + timedelta(milliseconds=self.offsets_ms[-1]),  # the TTL index's field
            "n": len(self.labels),
            "classes": list(self.classes),  # RecordFeedback's filter: the label must be one of them
            "offsets_ms": self.offsets_ms,
            "features": dict(zip(self.feature_names, self.features, strict=True)),
            "labels": self.labels,
            "probabilities": dict(zip(self.classes, self.probabilities, strict=True)),
            "latency_ms": self.latency_ms,
        }


@dataclass
class _Bucket:
    model_version: str
    source: str
    start: datetime
    summary: Summary = field(default_factory=Summary)
    served: int = 0  # rows served, sampled into the summary or not


@dataclass(frozen=True)
class LogStats:
    logged: int
    dropped: int
    queued: int
    last_dropped_at: datetime | None


class PredictionLog:
    def __init__(
        self,
        repository: MonitoringRepository,
        *,
        queue_size: int = 10_000,
        page_size: int = 500,
        linger_s: float = 1.0,
        bucket_rows: int = 1000,
        bucket_s: float = 10.0,
        write_timeout_s: float = 2.0,
    ) -> None:
        self._repository = repository
        self._queue_size = queue_size
        self._page_size = page_size
        self._linger_s = linger_s
        self._bucket_rows = bucket_rows
        self._bucket_s = bucket_s
        self._write_timeout_s = write_timeout_s
        self._open: dict[str, _Page] = {}  # by model version
        self._closed: deque[_Page] = deque()  # full or old enough, waiting to be written
        self._queued = 0  # records in open and closed pages
        self._wake = asyncio.Event()  # a page opened (its linger starts) or filled
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._pending: set[ObjectId] = set()  # pages open or waiting to be written
        self._written = asyncio.Condition()
        self._drop_warning = BurstLog(logger)
        self._rng = np.random.default_rng()
        self.logged = 0
        self.dropped = 0
        self.last_dropped_at: datetime | None = None

    # ---- the request path ---------------------------------------------------------------------

    def record(
        self,
        *,
        features: Mapping[str, float],
        label: str,
        probabilities: Mapping[str, float],
        model_version: str,
        latency_ms: float,
    ) -> str:
        """Add one served prediction to its page; returns its id (also when the record had to be dropped)."""
        if self._queued >= self._queue_size:
            self._drop(1, "the prediction log's queue is full (MongoDB slower than the predictions)")
            return str(PredictionRef(ObjectId(), 0))  # a page that will never exist: feedback gets NOT_FOUND
        page = self._open.get(model_version)
        if page is None or not page.fits(features, probabilities):
            if page is not None:
                self._close(page)
            page = self._open[model_version] = _Page(model_version, list(features), list(probabilities))
            self._pending.add(page.id)
            self._wake.set()
        index = page.add(features, label, probabilities, latency_ms)
        self._queued += 1
        if len(page) >= self._page_size:
            self._close(page)
        return str(PredictionRef(page.id, index))

    def summarise_bulk(
        self,
        *,
        model_version: str,
        columns: Mapping[str, npt.NDArray[np.float64]],
        label_indices: npt.NDArray[np.integer],
        classes: Sequence[str],
    ) -> None:
        """Fold a PredictBatch chunk into the drift summary (no per-row documents)."""
        indices = np.asarray(label_indices, dtype=np.intp)
        n = len(indices)
        if n > BULK_SAMPLE_ROWS:
            picked = self._rng.choice(n, size=BULK_SAMPLE_ROWS, replace=False)
            columns = {name: values[picked] for name, values in columns.items()}
            indices = indices[picked]
        counts = np.bincount(indices, minlength=len(classes))
        labels = Counter({c: int(k) for c, k in zip(classes, counts.tolist(), strict=True) if k})
        bucket = self._bucket(model_version, BULK)
        bucket.summary.update(columns, labels)
        bucket.served += n

    # ---- the writing task ---------------------------------------------------------------------

    async def close(self) -> None:
        """Write every page and summary still held (each write within the write timeout)."""
        for page in list(self._open.values()):
            self._close(page)
        await self._write_closed()
        await self._flush_buckets(force=True)

    async def run(self) -> None:
        """Write pages for ever (the server runs this as a background task and cancels it)."""
        while True:
            # Wake when a page opens or fills, when the oldest open page has lingered long enough,
            # or (idle) to write the drift summaries that are due.
            now = time.monotonic()
            oldest = min((p.opened for p in self._open.values()), default=None)
            wait_s = self._bucket_s if oldest is None else max(0.0, oldest + self._linger_s - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            self._wake.clear()
            now = time.monotonic()
            for page in [p for p in self._open.values() if now - p.opened >= self._linger_s]:
                self._close(page)
            await self._write_closed()
            await self._flush_buckets(force=False)

    def _close(self, page: _Page) -> None:
        if self._open.get(page.model_version) is page:
            del self._open[page.model_version]
        self._closed.append(page)
        self._wake.set()

    async def _write_closed(self) -> None:
        while self._closed:
            await self._write(self._closed.popleft())

    async def _write(self, page: _Page) -> None:
        n = len(page)
        self._summarise(page)
        try:
            await self._repository.insert_page(page.to_doc(), budget_s=self._write_timeout_s)
            self.logged += n
        except FruitstackError as exc:
            self._drop(n, exc.message)
        finally:
            self._queued -= n
            self._pending.discard(page.id)
            async with self._written:
                self._written.notify_all()

    def _summarise(self, page: _Page) -> None:
        columns = {
            name: np.asarray(values, dtype=np.float64)
            for name, values in zip(page.feature_names, page.features, strict=True)
        }
        bucket = self._bucket(page.model_version, SINGLE)
        bucket.summary.update(columns, Counter(page.labels))
        bucket.served += len(page)

    def _bucket(self, model_version: str, source: str) -> _Bucket:
        key = (model_version, source)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(model_version, source, datetime.now(UTC))
        return bucket

    async def _flush_buckets(self, *, force: bool) -> None:
        now = datetime.now(UTC)
        for key, bucket in list(self._buckets.items()):
            full = bucket.summary.rows >= self._bucket_rows
            old = (now - bucket.start).total_seconds() >= self._bucket_s
            if not (force or full or old) or bucket.summary.rows == 0:
                continue
            del self._buckets[key]
            doc = {
                "model_version": bucket.model_version,
                "source": bucket.source,
                "start": bucket.start,
                "end": now,
                "served": bucket.served,
                **bucket.summary.to_doc(),
            }
            try:
                await self._repository.insert_bucket(doc, budget_s=self._write_timeout_s)
            except FruitstackError as exc:
                self._drop_warning.warning(
                    f"a drift summary of {bucket.summary.rows} rows was lost: {exc.message}"
                )

    def _drop(self, n: int, reason: str) -> None:
        self.dropped += n
        self.last_dropped_at = datetime.now(UTC)
        self._drop_warning.warning(f"dropped {n} prediction log record(s): {reason} ({self.dropped} in all)")

    # ---- readers ------------------------------------------------------------------------------

    def holds(self, ref: PredictionRef) -> bool:
        """Whether the page of a prediction is still in this process, not written yet."""
        return ref.page in self._pending

    async def written(self, ref: PredictionRef, *, timeout_s: float) -> None:
        """Wait (at most timeout_s) until the page of a record held here was written or dropped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._written:
                await self._written.wait_for(lambda: ref.page not in self._pending)

    def unflushed(self, model_version: str, *, started_by: datetime | None = None) -> Summary:
        """The rows of a version summarised but not yet written as a bucket (this process only).

        Such a bucket is still open: its rows run from its start to now. With `started_by`, only the
        buckets that had started by then (a time range ending then overlaps them).
        """
        merged = Summary()
        for (version, _source), bucket in self._buckets.items():
            if version == model_version and (started_by is None or bucket.start <= started_by):
                merged.merge(bucket.summary)
        return merged

    def stats(self) -> LogStats:
        return LogStats(self.logged, self.dropped, self._queued, self.last_dropped_at)
