"""The monitoring store on a real nx-27017: what its reads leave behind on the server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from backend.monitoring.repository import BUCKETS, MonitoringRepository


class _Commands(monitoring.CommandListener):
    """The names of the commands the client sent."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_reading_the_newest_drift_buckets_closes_the_cursor_it_stops_early(
    mongodb_uri: str, mongodb_database: str
) -> None:
    """A drift report reads the newest buckets until it has its window and stops: the rest of the
    result must not stay on the server (nx-27017 keeps it in memory until the cursor is killed)."""
    commands = _Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, event_listeners=[commands])
    try:
        repository = MonitoringRepository(client, database=mongodb_database, timeout_s=5.0, retention_s=3600)
        await repository.prepare()
        now = datetime.now(UTC)
        await client[mongodb_database][BUCKETS].insert_many(
            [{"model_version": "1", "end": now - timedelta(seconds=i), "rows": 100} for i in range(40)]
        )
        commands.names.clear()

        docs = await repository.buckets(model_version="1", newest_rows=250)

        assert [doc["end"] for doc in docs] == sorted((doc["end"] for doc in docs), reverse=True)
        assert len(docs) == 3
        assert commands.names == ["find", "killCursors"]
    finally:
        await client.close()
