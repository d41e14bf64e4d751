"""The outcomes retraining runs record in MongoDB, read-only here.

Collection `retraining_runs`: one document per flow run (`_id` the flow run's id), written by the
flow at its end (pipelines/outcome.py documents the fields).
"""

from __future__ import annotations

import pymongo
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from backend.mongo import Document, MongoOperations

RUNS = "retraining_runs"  # pipelines/outcome.py writes it


class RetrainingRepository:
    def __init__(self, client: AsyncMongoClient[Document], *, database: str, timeout_s: float) -> None:
        self._runs: AsyncCollection[Document] = client[database][RUNS]
        self._mongo = MongoOperations(client, store="retraining history", timeout_s=timeout_s)

    async def recent(self, *, limit: int, time_left: float | None = None) -> list[Document]:
        """The newest outcomes first."""
        async with self._mongo.bounded("read the retraining outcomes", time_left):
            return await self._runs.find().sort("started_at", pymongo.DESCENDING).limit(limit).to_list()

    async def by_ids(self, ids: list[str], *, time_left: float | None = None) -> dict[str, Document]:
        if not ids:
            return {}
        async with self._mongo.bounded("read the retraining outcomes", time_left):
            docs = await self._runs.find({"_id": {"$in": ids}}).to_list()
        return {str(doc["_id"]): doc for doc in docs}
