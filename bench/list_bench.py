"""`nox -s bench -- list`: ListFruits page latency at depth, keyset paging against skip-based paging.

In one run: a fresh nx-27017 (or MONGODB_URI's server) is filled with N fruits, then pages of 50 are
timed through a real gRPC server (backend.server.open_backend, in this process) at the first page,
the middle and the end of the store. The reference is what most tutorials write: the same query
with `skip(depth)`, timed straight through pymongo at the same depths. Keyset pages should cost the
same at any depth; skip-based ones grow with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pymongo
from bson import ObjectId
from fruitstack.v1 import fruits_pb2, fruits_pb2_grpc
from grpc import aio
from pydantic import SecretStr
from rich.console import Console
from rich.progress import track
from rich.table import Table

from backend.config import Settings
from backend.fruits.page_tokens import PageTokenCodec
from backend.fruits.repository import FRUITS
from backend.server import open_backend
from scripts.processes import ROOT, NxServer, free_port

PAGE_SIZE = 50
SECRET = "bench-page-token-secret-0123456789"
NAMES = ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "kiwi", "lemon", "mango"]
REPORT = ROOT / ".artifacts" / "bench-list.json"


def seed(uri: str, database: str, fruits: int, batch: int = 10_000) -> None:
    """Insert fruits shaped as FruitRepository stores them; prepare() then re-bases the counter."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri)
    collection = client[database][FRUITS]
    now = datetime.now(UTC)
    for start in track(range(0, fruits, batch), description=f"seeding {fruits:,} fruits"):
        docs = [
            {"_id": ObjectId(), "seq": seq, "name": NAMES[seq % len(NAMES)], "created_at": now}
            for seq in range(start + 1, min(start + batch, fruits) + 1)
        ]
        collection.insert_many(docs, ordered=False)
    client.close()


async def time_calls(call: Callable[[], Awaitable[Any]], repeats: int) -> float:
    """Median milliseconds of `repeats` sequential calls, after one warm-up call."""
    await call()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


async def measure(uri: str, database: str, fruits: int, repeats: int) -> list[dict[str, Any]]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        grpc_host="127.0.0.1",
        grpc_port=0,
        mongodb_uri=uri,
        mongodb_database=database,
        mongodb_timeout_ms=30_000,
        page_token_secret=SecretStr(SECRET),
        # ListFruits is a read: measured without signing in (the policy interceptor still runs).
        allow_anonymous_reads=True,
        # No model service: paging must not depend on one.
        model_url=f"http://127.0.0.1:{free_port()}",
    )
    async with open_backend(settings) as backend:
        await backend.services.fruits.prepare()
        await backend.server.start()
        return await _measure_pages(backend.port, uri, database, fruits, repeats)


async def _measure_pages(
    port: int, uri: str, database: str, fruits: int, repeats: int
) -> list[dict[str, Any]]:
    tokens = PageTokenCodec(SECRET.encode())
    naive_client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(uri)
    naive = naive_client[database][FRUITS]
    rows = []
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = fruits_pb2_grpc.FruitServiceStub(channel)
            positions = (("first page", 0), ("middle", fruits // 2), ("last page", fruits - PAGE_SIZE))
            for label, depth in positions:
                # Newest first: the fruit at `depth` has seq fruits - depth, so start after the one above.
                token = tokens.encode(after_seq=fruits - depth + 1) if depth else ""
                request = fruits_pb2.ListFruitsRequest(page_size=PAGE_SIZE, page_token=token)

                async def grpc_page(request: fruits_pb2.ListFruitsRequest = request) -> None:
                    response = await stub.ListFruits(request)
                    assert len(response.fruits) == PAGE_SIZE

                def page(query: dict[str, Any], skip: int) -> Callable[[], Awaitable[None]]:
                    async def call() -> None:
                        cursor = naive.find(query).sort("seq", pymongo.DESCENDING).skip(skip).limit(PAGE_SIZE)
                        assert len(await cursor.to_list()) == PAGE_SIZE

                    return call

                after = {"seq": {"$lt": fruits - depth + 1}} if depth else {}
                grpc_ms = await time_calls(grpc_page, repeats)
                keyset_ms = await time_calls(page(after, 0), repeats)
                skip_ms = await time_calls(page({}, depth), repeats)
                rows.append(
                    {
                        "position": label,
                        "depth": depth,
                        "list_fruits_ms": grpc_ms,
                        "keyset_ms": keyset_ms,
                        "skip_ms": skip_ms,
                    }
                )
    finally:
        await naive_client.close()
    return rows


def report(rows: list[dict[str, Any]], fruits: int, console: Console) -> dict[str, Any]:
    first = rows[0]["list_fruits_ms"]
    table = Table(title=f"ListFruits, page_size {PAGE_SIZE}, {fruits:,} fruits (median ms)")
    headings = ("position", "depth", "ListFruits", "vs 1st page", "keyset query", "skip query", "skip/keyset")
    for heading in headings:
        table.add_column(heading, justify="left" if heading == "position" else "right")
    for row in rows:
        row["list_fruits_vs_first_page"] = row["list_fruits_ms"] / first
        row["skip_vs_keyset"] = row["skip_ms"] / row["keyset_ms"]
        table.add_row(
            row["position"],
            f"{row['depth']:,}",
            f"{row['list_fruits_ms']:.2f}",
            f"{row['list_fruits_vs_first_page']:.2f}x",
            f"{row['keyset_ms']:.2f}",
            f"{row['skip_ms']:.2f}",
            f"{row['skip_vs_keyset']:.1f}x",
        )
    console.print(table)
    date = datetime.now(UTC).date().isoformat()
    return {"date": date, "fruits": fruits, "page_size": PAGE_SIZE, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fruits", type=int, default=1_000_000, help="fruits in the store (default 1M)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per position")
    args = parser.parse_args(argv)
    console = Console(width=120)
    database = f"bench_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="fruitstack-bench-") as tmp:
        server = None if os.environ.get("MONGODB_URI") else NxServer(Path(tmp)).start()
        uri = os.environ.get("MONGODB_URI") or server.uri  # type: ignore[union-attr]
        try:
            seed(uri, database, args.fruits)
            rows = asyncio.run(measure(uri, database, args.fruits, args.repeats))
        finally:
            if server is not None:
                server.stop()
            else:
                pymongo.MongoClient(uri).drop_database(database)
    result = report(rows, args.fruits, console)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
