"""FruitService through a real gRPC server (port 0) and channel, on a real MongoDB (nx-27017)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from fruitstack.v1 import fruits_pb2
from grpc import aio
from pymongo import AsyncMongoClient

from tests.fixtures.backend import RunningBackend, backend_settings, running_backend


async def add(backend: RunningBackend, name: str) -> fruits_pb2.Fruit:
    response = await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name=name), timeout=10)
    return response.fruit


async def list_all(backend: RunningBackend, page_size: int) -> list[fruits_pb2.Fruit]:
    fruits: list[fruits_pb2.Fruit] = []
    token = ""
    while True:
        page = await backend.fruits.ListFruits(
            fruits_pb2.ListFruitsRequest(page_size=page_size, page_token=token), timeout=10
        )
        fruits.extend(page.fruits)
        token = page.next_page_token
        if not token:
            return fruits


async def expect_status(call: object, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()
    assert message in (info.value.details() or "")


async def test_add_normalises_and_returns_the_stored_fruit(backend: RunningBackend) -> None:
    fruit = await add(backend, "  cafe\u0301 ")
    assert fruit.name == "caf\u00e9"
    assert len(fruit.id) == 24
    assert fruit.created_at.seconds > 0
    page = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=10)
    assert list(page.fruits) == [fruit]  # what AddFruit answered is exactly what is stored
    assert page.total_size == 1
    assert page.next_page_token == ""


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 65, "at most 64"),
        ("bad\x00name", "U+0000"),
        ("bad\nname", "U+000A"),
        ("zero\u200bwidth", "U+200B"),
    ],
)
async def test_bad_names_are_invalid_argument(backend: RunningBackend, name: str, message: str) -> None:
    await expect_status(
        backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name=name), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
    )
    page = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=10)
    assert page.total_size == 0


@pytest.mark.parametrize("name", ['{"$gt": ""}', "$where", "{'$ne': null}", "a.b", "$regex"])
async def test_operator_like_names_are_stored_literally(backend: RunningBackend, name: str) -> None:
    await add(backend, "plain")
    fruit = await add(backend, name)
    assert fruit.name == name
    fruits = await list_all(backend, page_size=10)
    assert [f.name for f in fruits] == [name, "plain"]
    summary = await backend.fruits.SummarizeFruits(fruits_pb2.SummarizeFruitsRequest(), timeout=10)
    assert {c.name: c.count for c in summary.counts} == {name: 1, "plain": 1}


async def test_list_is_newest_first_and_pages_cover_everything_once(backend: RunningBackend) -> None:
    added = [await add(backend, f"fruit {i}") for i in range(23)]
    fruits = await list_all(backend, page_size=5)
    assert [f.id for f in fruits] == [f.id for f in reversed(added)]


async def test_pages_stay_stable_while_fruits_are_added_and_deleted(backend: RunningBackend) -> None:
    before = [await add(backend, f"old {i}") for i in range(12)]
    first = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(page_size=4), timeout=10)
    # Inserts between pages land before the first page; a deletion of a seen fruit shifts nothing.
    for i in range(5):
        await add(backend, f"new {i}")
    await backend.fruits.DeleteFruit(fruits_pb2.DeleteFruitRequest(id=first.fruits[0].id), timeout=10)
    seen = list(first.fruits)
    token = first.next_page_token
    while token:
        page = await backend.fruits.ListFruits(
            fruits_pb2.ListFruitsRequest(page_size=4, page_token=token), timeout=10
        )
        seen.extend(page.fruits)
        token = page.next_page_token
    ids = [f.id for f in seen]
    assert len(ids) == len(set(ids)), "a fruit was served twice"
    assert ids == [f.id for f in reversed(before)], "a fruit was skipped or reordered"


@pytest.mark.parametrize(
    ("page_size", "expected"), [(0, 50), (1, 1), (7, 7), (1001, 1000), (2**31 - 1, 1000)]
)
async def test_page_size_default_and_cap(backend: RunningBackend, page_size: int, expected: int) -> None:
    # Add more fruits than the expected page in few round trips: concurrent AddFruit calls, 25 at
    # a time because a deeper queue on the single-writer test store can outlast one call's
    # deadline when CI's two cores are busy (100 at a time once timed out after 10 s).
    total = min(expected + 1, 1001)
    for start in range(0, total, 25):
        await asyncio.gather(*(add(backend, f"f{i}") for i in range(start, min(start + 25, total))))
    page = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(page_size=page_size), timeout=30)
    assert len(page.fruits) == expected
    assert page.next_page_token != ""
    assert page.total_size == total


async def test_negative_page_size_is_invalid_argument(backend: RunningBackend) -> None:
    await expect_status(
        backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(page_size=-1), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size must not be negative",
    )


async def test_tampered_page_tokens_are_invalid_argument(backend: RunningBackend) -> None:
    for i in range(3):
        await add(backend, f"f{i}")
    token = (
        await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(page_size=1), timeout=10)
    ).next_page_token
    payload, _, mac = token.partition(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for bad in ["garbage", token + "x", f"{flipped}.{mac}", f"{payload}.", "x" * 5_000]:
        await expect_status(
            backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(page_token=bad), timeout=10),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token is invalid",
        )


async def test_delete_removes_the_fruit(backend: RunningBackend) -> None:
    keep, gone = await add(backend, "keep"), await add(backend, "gone")
    await backend.fruits.DeleteFruit(fruits_pb2.DeleteFruitRequest(id=gone.id), timeout=10)
    page = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=10)
    assert ([f.id for f in page.fruits], page.total_size) == ([keep.id], 1)
    await expect_status(
        backend.fruits.DeleteFruit(fruits_pb2.DeleteFruitRequest(id=gone.id), timeout=10),
        grpc.StatusCode.NOT_FOUND,
        gone.id,
    )


async def test_delete_unknown_id_is_not_found(backend: RunningBackend) -> None:
    await expect_status(
        backend.fruits.DeleteFruit(fruits_pb2.DeleteFruitRequest(id="0123456789abcdef01234567"), timeout=10),
        grpc.StatusCode.NOT_FOUND,
        "no fruit with id",
    )


@pytest.mark.parametrize("fruit_id", ["", "nope", "0123456789abcdef0123456", '{"$ne": null}'])
async def test_delete_malformed_id_is_invalid_argument(backend: RunningBackend, fruit_id: str) -> None:
    await expect_status(
        backend.fruits.DeleteFruit(fruits_pb2.DeleteFruitRequest(id=fruit_id), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
        "id",
    )


async def test_summarize_counts_per_name_most_common_first(backend: RunningBackend) -> None:
    for name in ["pear", "apple", "pear", "fig", "apple", "pear", " fig"]:
        await add(backend, name)
    summary = await backend.fruits.SummarizeFruits(fruits_pb2.SummarizeFruitsRequest(), timeout=10)
    assert [(c.name, c.count) for c in summary.counts] == [("pear", 3), ("apple", 2), ("fig", 2)]
    assert summary.total == 7


async def test_empty_store(backend: RunningBackend) -> None:
    page = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=10)
    assert (list(page.fruits), page.next_page_token, page.total_size) == ([], "", 0)
    summary = await backend.fruits.SummarizeFruits(fruits_pb2.SummarizeFruitsRequest(), timeout=10)
    assert (list(summary.counts), summary.total) == ([], 0)


async def test_a_store_restored_without_its_counter_keeps_working(
    mongodb_uri: str, mongodb_database: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    async with client:
        await client[mongodb_database]["fruits"].insert_one(
            {"seq": 100, "name": "restored", "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
        )
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database)
    async with running_backend(settings) as backend:
        new = await add(backend, "new")
        assert [f.name for f in await list_all(backend, page_size=1)] == ["new", "restored"]
        assert new.name == "new"
        page = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=10)
        assert page.total_size == 2  # the running count was re-based on the restored fruit
