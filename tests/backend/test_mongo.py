"""backend/mongo.py on a real nx-27017: bounded operations that time out leave the client usable."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import uvloop
from pymongo import AsyncMongoClient

from backend.exceptions import FruitstackError
from backend.mongo import MongoOperations

POOL = 2
CALLERS = 60
ROUNDS = 5
ROWS = 2000


async def _burst(uri: str, database: str, outcome: dict[str, Any]) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, maxPoolSize=POOL)
    try:
        operations = MongoOperations(client, store="test store", timeout_s=1.0)
        rows = client[database]["rows"]
        await rows.insert_many([{"i": i, "pad": "x" * 1000} for i in range(ROWS)])
        failed: Counter[str] = Counter()

        async def read(i: int) -> None:
            # Budgets a few ms apart and too short for a turn at the pool: most calls time out while
            # waiting for a connection, at all sorts of moments.
            try:
                async with operations.bounded("read the rows", budget_s=0.02 + (i % 7) * 0.003):
                    await rows.find({}).to_list()
            except FruitstackError as exc:
                failed[type(exc).__name__] += 1

        for _ in range(ROUNDS):
            await asyncio.gather(*(read(i) for i in range(CALLERS)))
        outcome["failed"] = failed
        async with operations.bounded("count the rows", budget_s=5.0):
            outcome["rows"] = await rows.count_documents({})
    finally:
        await client.close()


def test_calls_timing_out_while_waiting_for_a_pooled_connection_leave_the_pool_usable(
    mongodb_uri: str, mongodb_database: str
) -> None:
    """pymongo waits for a pooled connection with asyncio.wait_for, which on Python 3.11 could leave
    the wait running when its timeout met the hard stop's cancellation; the wait then kept the pool's
    lock, and every later operation hung, cancelling included (see backend/mongo.py). Run on uvloop,
    as the backend is, in a thread of its own, so that a hang fails the test instead of stopping it."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            uvloop.run(_burst(mongodb_uri, mongodb_database, outcome))
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)

    assert not thread.is_alive(), "MongoDB operations still hang after 60 s: the pool deadlocked"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["rows"] == ROWS
    assert sum(outcome["failed"].values()) > CALLERS  # the short budgets did run out, many times
    # Too slow for the load, whether the budget ran out in the pool's queue or on the server.
    assert set(outcome["failed"]) == {"DeadlineExceeded"}
