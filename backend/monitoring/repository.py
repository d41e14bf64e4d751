"""The monitoring collections in MongoDB: the only module of the feature that speaks pymongo.

- `prediction_pages`: the logged Predicts, a page of up to a few hundred per document (see
  prediction_log.py for why), column by column: `features.<name>`, `labels`, `probabilities.<class>`,
  `latency_ms` and `offsets_ms` (since `start`) are lists with one entry per prediction; `feedback` maps a
  prediction's index (as text) to its true label once given. A page expires after the retention
  (TTL index on `end`, its newest prediction).
- `drift_buckets`: summaries (sketches and label counts) of consecutive served rows, a few thousand
  rows or seconds each, per model version and source (Predict or PredictBatch). Drift reports and
  prediction counts read only these, so their cost grows with the number of buckets in the window,
  never with its rows. Same retention.
- `accuracy_bins`: per model version and minute of feedback, how many labels came in and how many
  predictions they said were right; per-version totals are their sums. Same retention.
- `drift_checks`: the periodic checks' verdicts (`event: true` when one turned to drift).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pymongo
from bson import ObjectId
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from backend.mongo import Document, MongoOperations

PREDICTIONS = "prediction_pages"
BUCKETS = "drift_buckets"
ACCURACY = "accuracy_bins"
CHECKS = "drift_checks"
_REF = re.compile(r"([0-9a-f]{24})-([0-9]{1,6})")


@dataclass(frozen=True, slots=True)
class PredictionRef:
    """Where a logged prediction is: its page and its index in it; as text `<page id>-<index>`."""

    page: ObjectId
    index: int

    def __str__(self) -> str:
        return f"{self.page}-{self.index}"

    @classmethod
    def parse(cls, raw: str) -> PredictionRef | None:
        match = _REF.fullmatch(raw)
        return None if match is None else cls(ObjectId(match[1]), int(match[2]))


def unpack(page: Document) -> Iterator[tuple[str, Document]]:
    """The records of a stored page as (prediction id, one document per prediction), in order."""
    features, probabilities = page["features"], page["probabilities"]
    feedback = page.get("feedback", {})
    start = page["start"]
    for i in range(int(page["n"])):
        record: Document = {
            "at": start + timedelta(milliseconds=page["offsets_ms"][i]),
            "model_version": page["model_version"],
            "features": {name: values[i] for name, values in features.items()},
            "label": page["labels"][i],
            "probabilities": {name: values[i] for name, values in probabilities.items()},
            "latency_ms": page["latency_ms"][i],
        }
        if str(i) in feedback:
            record["feedback"] = feedback[str(i)]
        yield str(PredictionRef(page["_id"], i)), record


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    model_version: str
    predicted_label: str
    correct: bool
    replaced: bool


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


class MonitoringRepository:
    def __init__(
        self, client: AsyncMongoClient[Document], *, database: str, timeout_s: float, retention_s: int
    ) -> None:
        db = client[database]
        self.predictions: AsyncCollection[Document] = db[PREDICTIONS]
        self._buckets: AsyncCollection[Document] = db[BUCKETS]
        self._accuracy: AsyncCollection[Document] = db[ACCURACY]
        self._checks: AsyncCollection[Document] = db[CHECKS]
        self._mongo = MongoOperations(client, store="monitoring store", timeout_s=timeout_s)
        self.retention_s = retention_s
        self._prepared = False

    async def prepare(self) -> None:
        """TTL and query indexes (idempotent); called once MongoDB answers."""
        if self._prepared:
            return
        async with self._mongo.bounded("prepare the monitoring collections", budget_s=600):
            ttl = self.retention_s
            await self.predictions.create_index("end", name="end_ttl", expireAfterSeconds=ttl)
            await self._buckets.create_index("end", name="end_ttl", expireAfterSeconds=ttl)
            await self._buckets.create_index(
                [("model_version", pymongo.ASCENDING), ("end", pymongo.DESCENDING)], name="version_end"
            )
            await self._accuracy.create_index("start", name="start_ttl", expireAfterSeconds=ttl)
            await self._checks.create_index("at", name="at_ttl", expireAfterSeconds=ttl)
        self._prepared = True

    # ---- the log --------------------------------------------------------------------------

    async def insert_page(self, doc: Document, *, budget_s: float) -> None:
        async with self._mongo.bounded("log predictions", budget_s=budget_s, quiet=True):
            await self.predictions.insert_one(doc)

    async def insert_bucket(self, doc: Document, *, budget_s: float) -> None:
        async with self._mongo.bounded("store a drift summary", budget_s=budget_s, quiet=True):
            await self._buckets.insert_one(doc)

    async def buckets(
        self,
        *,
        model_version: str,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_rows: int | None = None,
    ) -> list[Document]:
        """Buckets of one version, newest first: within [since, until], or the newest holding newest_rows."""
        query: Document = {"model_version": model_version}
        if since is not None or until is not None:
            query["end"] = {**({"$gte": since} if since else {}), **({"$lte": until} if until else {})}
        async with self._mongo.bounded("read drift summaries"):
            cursor = self._buckets.find(query).sort("end", pymongo.DESCENDING)
            if newest_rows is None:
                return await cursor.to_list()
            found, rows = [], 0
            # Small batches: a bucket is a few KB of sketches, and the newest few usually suffice,
            # so a default batch (101 documents) would fetch far more than the window needs.
            # Closed on the way out, since it mostly stops early: an open cursor keeps the rest of
            # the result on the server until killed (nx-27017 grew by 165 MB in 500 such reads).
            async with cursor.batch_size(16) as batches:
                async for doc in batches:
                    found.append(doc)
                    rows += int(doc["rows"])
                    if rows >= newest_rows:
                        break
            return found

    async def bucket_counts(self, *, since: datetime, until: datetime) -> list[Document]:
        """start, source and rows of every bucket (all versions) that ended in the range."""
        async with self._mongo.bounded("count predictions"):
            cursor = self._buckets.find(
                {"end": {"$gte": since, "$lte": until}},
                projection={"start": 1, "source": 1, "rows": 1, "served": 1},
            )
            return await cursor.to_list()

    # ---- feedback -------------------------------------------------------------------------

    async def record_feedback(self, *, ref: PredictionRef, label: str) -> FeedbackResult | None:
        """Set the true label of a logged prediction; None when there is no such (or an expired) one,
        or the label is not a class of the version that made it (nothing is written then)."""
        now = datetime.now(UTC)
        key = str(ref.index)
        async with self._mongo.bounded("record the feedback"):
            # The whole `feedback` and `labels` come back, not their one entry: nx-27017 answers a
            # `$slice` projection with an empty list and names a projected `feedback.<i>` flatly.
            page = await self.predictions.find_one_and_update(
                {"_id": ref.page, "n": {"$gt": ref.index}, "classes": label},
                {"$set": {f"feedback.{key}": {"label": label, "at": now}}},
                projection={"labels": 1, "model_version": 1, "feedback": 1},
                return_document=ReturnDocument.BEFORE,
            )
            if page is None:
                return None
            predicted = str(page["labels"][ref.index])
            correct = predicted == label
            previous = page.get("feedback", {}).get(key)
            inc = {"labelled": 1, "correct": int(correct)}
            if previous is not None:  # a second label replaces the first: undo the first one's counts
                inc = {"labelled": 0, "correct": int(correct) - int(predicted == previous["label"])}
            version = str(page["model_version"])
            bin_start = minute(now)
            await self._accuracy.update_one(
                {"_id": f"{version}|{bin_start.isoformat()}"},
                # $setOnInsert, not $set: nx-27017 stores a datetime written by $set as a string.
                {"$inc": inc, "$setOnInsert": {"model_version": version, "start": bin_start}},
                upsert=True,
            )
        return FeedbackResult(
            model_version=version, predicted_label=predicted, correct=correct, replaced=previous is not None
        )

    async def classes_of(self, *, ref: PredictionRef) -> list[str] | None:
        """The classes of the version that made a logged prediction; None when there is no such one."""
        async with self._mongo.bounded("find the prediction"):
            page = await self.predictions.find_one(
                {"_id": ref.page, "n": {"$gt": ref.index}}, projection={"classes": 1}
            )
        return None if page is None else [str(c) for c in page["classes"]]

    async def accuracy_bins(self, *, since: datetime | None = None) -> list[Document]:
        query: Document = {} if since is None else {"start": {"$gte": since}}
        async with self._mongo.bounded("read live accuracy"):
            return await self._accuracy.find(query).to_list()

    # ---- drift checks ---------------------------------------------------------------------

    async def insert_check(self, doc: Document) -> None:
        async with self._mongo.bounded("record a drift check"):
            await self._checks.insert_one(doc)

    async def recent_checks(self, *, limit: int, events_only: bool = False) -> list[Document]:
        query: Document = {"event": True} if events_only else {}
        async with self._mongo.bounded("read drift checks"):
            return await self._checks.find(query).sort("at", pymongo.DESCENDING).limit(limit).to_list()

    async def last_check(self, *, model_version: str) -> Document | None:
        async with self._mongo.bounded("read drift checks"):
            return await self._checks.find_one(
                {"model_version": model_version}, sort=[("at", pymongo.DESCENDING)]
            )
