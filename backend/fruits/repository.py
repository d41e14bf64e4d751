"""Fruits in MongoDB: the only module that speaks pymongo.

Fruits are listed newest first by `seq`, an integer taken from an atomic counter document
(`counters`, the standard MongoDB pattern) when a fruit is added. Keyset paging on an indexed
integer is stable under concurrent inserts and never skips over earlier pages, on MongoDB and on
the nx-27017 wire-protocol server used locally (where range filters on `_id` or on dates are full
scans). The same counter document keeps a running count of fruits for `total_size`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pymongo
from bson import ObjectId
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from backend.mongo import Document, MongoOperations

logger = logging.getLogger(__name__)

FRUITS = "fruits"
COUNTERS = "counters"
# Leave the gRPC layer this much of the caller's deadline to send the answer.
_PREPARE_S = 600.0


@dataclass(frozen=True, slots=True)
class Fruit:
    id: str
    name: str
    created_at: datetime
    seq: int


@dataclass(frozen=True, slots=True)
class FruitPage:
    fruits: list[Fruit]
    # seq of the last fruit when more fruits follow, else None.
    next_after_seq: int | None
    # The running count of the counter document: exact unless a write failed half-way (re-based
    # on a real count at every start); AIP-158 allows an estimate.
    total_size: int


@dataclass(frozen=True, slots=True)
class FruitCount:
    name: str
    count: int


def _to_fruit(doc: Document) -> Fruit:
    return Fruit(id=str(doc["_id"]), name=doc["name"], created_at=doc["created_at"], seq=doc["seq"])


class FruitRepository:
    """Typed, keyword-only access to the fruits; pymongo errors leave it as Unavailable/DeadlineExceeded."""

    def __init__(self, client: AsyncMongoClient[Document], *, database: str, timeout_s: float) -> None:
        # Shared with other repositories and closed by its owner (backend.server.open_backend).
        self._client = client
        self._fruits: AsyncCollection[Document] = client[database][FRUITS]
        self._counters: AsyncCollection[Document] = client[database][COUNTERS]
        self._mongo = MongoOperations(client, store="fruit store", timeout_s=timeout_s)
        self._prepared = False

    async def check(self, *, time_left: float | None = None) -> None:
        """Ping MongoDB and make sure the indexes exist; Unavailable if it cannot be reached."""
        async with self._mongo.bounded("reach MongoDB", time_left):
            await self._client.admin.command("ping")
        if not self._prepared:
            # Building an index on a large existing collection takes far longer than one call.
            async with self._mongo.bounded("prepare the collections", None, budget_s=_PREPARE_S):
                await self.prepare()

    async def prepare(self) -> None:
        """Create the indexes and bring the counter document in line with the fruits (idempotent)."""
        # Unique so that a counter bug could never make two fruits share a page position.
        await self._fruits.create_index([("seq", pymongo.DESCENDING)], unique=True, name="seq_desc")
        await self._fruits.create_index([("name", pymongo.ASCENDING)], name="name")
        # A store restored without its counter document must not hand out seq values again, and
        # the running count (see list_page) is re-based once per start on a real count.
        newest = await self._fruits.find_one({}, sort=[("seq", pymongo.DESCENDING)], projection={"seq": 1})
        count = await self._fruits.estimated_document_count()
        update: Document = {"$set": {"count": count}}
        if newest is not None:
            update["$max"] = {"seq": newest["seq"]}
        await self._counters.update_one({"_id": FRUITS}, update, upsert=True)
        self._prepared = True
        logger.info("MongoDB indexes are in place; the store holds %d fruits", count)

    async def add(self, *, name: str, time_left: float | None = None) -> Fruit:
        """Store a fruit; its name must already be normalised. Returns it once acknowledged."""
        async with self._mongo.bounded("add the fruit", time_left):
            counter = await self._counters.find_one_and_update(
                {"_id": FRUITS},
                {"$inc": {"seq": 1, "count": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            assert counter is not None  # upsert=True always returns the document
            # BSON dates hold milliseconds; truncate so the answer equals what a later read returns.
            now = datetime.now(UTC)
            doc: Document = {
                "_id": ObjectId(),
                "seq": int(counter["seq"]),
                "name": name,
                "created_at": now.replace(microsecond=now.microsecond // 1000 * 1000),
            }
            await self._fruits.insert_one(doc)
        return _to_fruit(doc)

    async def list_page(
        self, *, page_size: int, after_seq: int | None = None, time_left: float | None = None
    ) -> FruitPage:
        """Up to page_size fruits, newest first, starting after the fruit with seq after_seq."""
        query: Document = {} if after_seq is None else {"seq": {"$lt": after_seq}}
        async with self._mongo.bounded("list fruits", time_left):
            # One extra document tells whether another page follows without a count.
            cursor = self._fruits.find(query).sort("seq", pymongo.DESCENDING).limit(page_size + 1)
            docs = await cursor.to_list()
            # A running count kept next to seq: collection counts cost a scan on nx-27017
            # (~0.2 s at 1M fruits) while this is one indexed read; AIP-158 allows an estimate.
            counter = await self._counters.find_one({"_id": FRUITS})
        total = max(0, int(counter.get("count", 0))) if counter else 0
        fruits = [_to_fruit(doc) for doc in docs[:page_size]]
        more = len(docs) > page_size
        return FruitPage(fruits=fruits, next_after_seq=fruits[-1].seq if more else None, total_size=total)

    async def delete(self, *, fruit_id: ObjectId, time_left: float | None = None) -> bool:
        """Delete one fruit; False if there was none with that id."""
        async with self._mongo.bounded("delete the fruit", time_left):
            result = await self._fruits.delete_one({"_id": fruit_id})
            if result.deleted_count == 1:
                await self._counters.update_one({"_id": FRUITS}, {"$inc": {"count": -1}})
        return result.deleted_count == 1

    async def summarize(self, *, time_left: float | None = None) -> list[FruitCount]:
        """Number of fruits per name, most common first, ties by name."""
        pipeline: list[Document] = [
            {"$group": {"_id": "$name", "count": {"$sum": 1}}},
            {"$sort": {"count": -1, "_id": 1}},
        ]
        async with self._mongo.bounded("summarize fruits", time_left):
            cursor = await self._fruits.aggregate(pipeline)
            docs = await cursor.to_list()
        return [FruitCount(name=doc["_id"], count=int(doc["count"])) for doc in docs]
