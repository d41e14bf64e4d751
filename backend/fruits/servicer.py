"""FruitService: protobuf in, validation and repository calls, protobuf out."""

from __future__ import annotations

from typing import Any

from fruitstack.v1 import fruits_pb2, fruits_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from backend.exceptions import NotFound
from backend.fruits.page_tokens import PageTokenCodec
from backend.fruits.repository import Fruit, FruitRepository
from backend.fruits.validation import normalize_name, parse_fruit_id, resolve_page_size

Context = aio.ServicerContext[Any, Any]


def _to_proto(fruit: Fruit) -> fruits_pb2.Fruit:
    created_at = Timestamp()
    created_at.FromDatetime(fruit.created_at)
    return fruits_pb2.Fruit(id=fruit.id, name=fruit.name, created_at=created_at)


class FruitServicer(fruits_pb2_grpc.FruitServiceServicer):
    def __init__(self, repository: FruitRepository, page_tokens: PageTokenCodec) -> None:
        self._repository = repository
        self._page_tokens = page_tokens

    async def AddFruit(
        self, request: fruits_pb2.AddFruitRequest, context: Context
    ) -> fruits_pb2.AddFruitResponse:
        name = normalize_name(request.name)
        fruit = await self._repository.add(name=name, time_left=context.time_remaining())
        return fruits_pb2.AddFruitResponse(fruit=_to_proto(fruit))

    async def ListFruits(
        self, request: fruits_pb2.ListFruitsRequest, context: Context
    ) -> fruits_pb2.ListFruitsResponse:
        page_size = resolve_page_size(request.page_size)
        after_seq = self._page_tokens.decode(request.page_token) if request.page_token else None
        page = await self._repository.list_page(
            page_size=page_size, after_seq=after_seq, time_left=context.time_remaining()
        )
        next_token = (
            "" if page.next_after_seq is None else self._page_tokens.encode(after_seq=page.next_after_seq)
        )
        return fruits_pb2.ListFruitsResponse(
            fruits=[_to_proto(f) for f in page.fruits], next_page_token=next_token, total_size=page.total_size
        )

    async def DeleteFruit(
        self, request: fruits_pb2.DeleteFruitRequest, context: Context
    ) -> fruits_pb2.DeleteFruitResponse:
        fruit_id = parse_fruit_id(request.id)
        if not await self._repository.delete(fruit_id=fruit_id, time_left=context.time_remaining()):
            raise NotFound(f"no fruit with id {request.id!r}")
        return fruits_pb2.DeleteFruitResponse()

    async def SummarizeFruits(
        self, request: fruits_pb2.SummarizeFruitsRequest, context: Context
    ) -> fruits_pb2.SummarizeFruitsResponse:
        counts = await self._repository.summarize(time_left=context.time_remaining())
        return fruits_pb2.SummarizeFruitsResponse(
            counts=[fruits_pb2.FruitCount(name=c.name, count=c.count) for c in counts],
            total=sum(c.count for c in counts),
        )
