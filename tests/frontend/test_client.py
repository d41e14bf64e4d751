"""frontend.client against a real backend (in process, port 0) over a real channel and real nx-27017."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from frontend.client import FruitstackClient, Health
from frontend.exceptions import BackendUnreachable, FailedPrecondition, InvalidRequest, NotFound, Unavailable
from scripts.processes import free_port
from tests.fixtures.backend import RunningBackend
from tests.fixtures.model_service import ModelService


@pytest.fixture
async def client(backend: RunningBackend) -> AsyncIterator[FruitstackClient]:
    client = FruitstackClient(backend.target, timeout_s=5)
    yield client
    await client.close()


async def test_fruits_round_trip(client: FruitstackClient) -> None:
    apple = await client.add_fruit(name="  apple ")
    await client.add_fruit(name="pear")
    await client.add_fruit(name="apple")
    assert apple.name == "apple"
    assert apple.created_at is not None

    page = await client.list_fruits(page_size=2)
    assert [f.name for f in page.fruits] == ["apple", "pear"]  # newest first
    assert page.total_size == 3
    rest = await client.list_fruits(page_size=2, page_token=page.next_page_token)
    assert [f.id for f in rest.fruits] == [apple.id]
    assert rest.next_page_token == ""

    summary = await client.summarize_fruits()
    assert [(c.name, c.count) for c in summary.counts] == [("apple", 2), ("pear", 1)]
    assert summary.total == 3

    await client.delete_fruit(fruit_id=apple.id)
    with pytest.raises(NotFound):
        await client.delete_fruit(fruit_id=apple.id)


async def test_invalid_name_raises_with_the_backends_message(client: FruitstackClient) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await client.add_fruit(name="   ")
    assert "empty" in caught.value.message
    assert caught.value.code == "INVALID_ARGUMENT"
    assert not isinstance(caught.value, Unavailable)


async def test_prediction_without_model_service_is_unavailable_not_unreachable(
    client: FruitstackClient,
) -> None:
    # The `backend` fixture points at a model service port nobody listens on.
    with pytest.raises(Unavailable) as caught:
        await client.get_model()
    assert not isinstance(caught.value, BackendUnreachable)
    assert isinstance(caught.value, Unavailable)
    health = await client.health()
    assert health == Health(backend=True, fruit_store=True, model_service=False)


async def test_unreachable_backend() -> None:
    client = FruitstackClient(f"127.0.0.1:{free_port()}", timeout_s=2)
    try:
        with pytest.raises(BackendUnreachable, match="cannot be reached"):
            await client.list_fruits(page_size=5)
        assert await client.health() == Health(backend=False, fruit_store=None, model_service=None)
    finally:
        await client.close()


async def test_a_refused_model_is_a_failed_precondition_not_an_outage(
    private_model_service: ModelService, backend_with_private_model: RunningBackend
) -> None:
    # A new champion whose artifact then changes in the registry: UpdateModel must refuse it.
    tampered = await asyncio.to_thread(private_model_service.train, seed=11)
    private_model_service.corrupt(tampered)
    client = FruitstackClient(backend_with_private_model.target, timeout_s=30)
    try:
        with pytest.raises(FailedPrecondition) as caught:
            await client.update_model()
        assert not isinstance(caught.value, Unavailable)
        assert caught.value.code == "FAILED_PRECONDITION"
        assert "refusing to load" in caught.value.message
    finally:
        await client.close()
