"""The prediction log: every Predict recorded off the request path, and drift summaries of all served rows.

`record()` only puts a document on a bounded in-memory queue and returns the prediction's id: a
prediction never waits for MongoDB and never fails because of it. One task drains the queue in
batched inserts. When MongoDB is slow or down, or the queue is full, records are dropped and
counted (`dropped`, shown by GetMonitoringStatus and warned about once per burst), never blocked
on; logging resumes by itself when MongoDB answers again.

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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from bson import ObjectId

from backend.burst_log import BurstLog
from backend.exceptions import FruitstackError
from backend.mongo import Document
from backend.monitoring.drift import Summary
from backend.monitoring.repository import MonitoringRepository

logger = logging.getLogger(__name__)

SINGLE, BULK = "predict", "bulk"
BULK_SAMPLE_ROWS = 5_000


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
        batch_size: int = 500,
        linger_s: float = 0.25,
        bucket_rows: int = 1000,
        bucket_s: float = 10.0,
        write_timeout_s: float = 2.0,
    ) -> None:
        self._repository = repository
        self._queue: asyncio.Queue[Document] = asyncio.Queue(queue_size)
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._bucket_rows = bucket_rows
        self._bucket_s = bucket_s
        self._write_timeout_s = write_timeout_s
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._pending: set[ObjectId] = set()  # queued or being written
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
        """Queue one served prediction; returns its id (also when the record had to be dropped)."""
        prediction_id = ObjectId()
        doc: Document = {
            "_id": prediction_id,
            "at": datetime.now(UTC),
            "model_version": model_version,
            "features": dict(features),
            "label": label,
            "probabilities": dict(probabilities),
            "latency_ms": round(latency_ms, 3),
        }
        try:
            self._queue.put_nowait(doc)
        except asyncio.QueueFull:
            self._drop(1, "the prediction log's queue is full (MongoDB slower than the predictions)")
        else:
            self._pending.add(prediction_id)
        return str(prediction_id)

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

    # ---- the draining task --------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is still queued and every summary (each write within the write timeout)."""
        while not self._queue.empty():
            await self._write_batch()
        await self._flush_buckets(force=True)

    async def run(self) -> None:
        """Drain the queue for ever (the server runs this as a background task and cancels it)."""
        while True:
            try:
                async with asyncio.timeout(self._bucket_s):
                    first = await self._queue.get()
            except TimeoutError:
                await self._flush_buckets(force=False)
                continue
            # Let a batch gather: one insert of hundreds of records costs MongoDB (nx-27017 above all)
            # and this event loop a fraction per record of an insert each (measured: 0.4 ms of
            # nx-27017's CPU per record one by one, 0.1 in batches of 50). Records wait a quarter of a
            # second at most; predictions never do.
            if self._queue.qsize() < self._batch_size - 1:
                await asyncio.sleep(self._linger_s)
            await self._write_batch(first)
            await self._flush_buckets(force=False)

    async def _write_batch(self, first: Document | None = None) -> None:
        batch = [] if first is None else [first]
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if not batch:
            return
        self._summarise(batch)
        try:
            await self._repository.insert_predictions(batch, budget_s=self._write_timeout_s)
            self.logged += len(batch)
        except FruitstackError as exc:
            self._drop(len(batch), exc.message)
        finally:
            for doc in batch:
                self._pending.discard(doc["_id"])
            async with self._written:
                self._written.notify_all()

    def _summarise(self, batch: list[Document]) -> None:
        by_version: dict[str, list[Document]] = {}
        for doc in batch:
            by_version.setdefault(doc["model_version"], []).append(doc)
        for version, docs in by_version.items():
            names = list(docs[0]["features"])
            columns = {
                n: np.fromiter((d["features"].get(n, np.nan) for d in docs), np.float64, len(docs))
                for n in names
            }
            bucket = self._bucket(version, SINGLE)
            bucket.summary.update(columns, Counter(d["label"] for d in docs))
            bucket.served += len(docs)

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

    async def written(self, prediction_id: ObjectId, *, timeout_s: float) -> None:
        """Wait (at most timeout_s) until a queued record was written or dropped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._written:
                await self._written.wait_for(lambda: prediction_id not in self._pending)

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
        return LogStats(self.logged, self.dropped, self._queue.qsize(), self.last_dropped_at)
