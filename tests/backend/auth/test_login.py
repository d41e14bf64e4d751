"""Login over gRPC against real users in real MongoDB, and the failed-login limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from fruitstack.v1 import auth_pb2, auth_pb2_grpc, fruits_pb2, fruits_pb2_grpc
from grpc import aio
from pymongo import AsyncMongoClient

from backend.auth.accounts import Accounts, LoginLimit
from backend.auth.passwords import Passwords
from backend.auth.repository import UserRepository
from backend.auth.roles import Role
from backend.exceptions import ResourceExhausted, Unauthenticated
from backend.mongo import Document
from tests.fixtures.backend import TEST_ADMIN, RunningBackend, bearer, signing_tokens


def auth(backend: RunningBackend) -> auth_pb2_grpc.AuthServiceAsyncStub:
    return auth_pb2_grpc.AuthServiceStub(backend.plain_channel)


async def login(backend: RunningBackend, username: str, password: str) -> auth_pb2.LoginResponse:
    request = auth_pb2.LoginRequest(username=username, password=password)
    return await auth(backend).Login(request, timeout=10)


async def test_the_first_admin_signs_in_and_the_token_works(backend: RunningBackend) -> None:
    answer = await login(backend, "  Admin ", TEST_ADMIN[1])  # names are trimmed, case-insensitive

    assert answer.user.username == "admin"
    assert answer.user.role == auth_pb2.ROLE_ADMIN
    assert answer.expires_at.seconds > 0
    added = await fruits_pb2_grpc.FruitServiceStub(backend.plain_channel).AddFruit(
        fruits_pb2.AddFruitRequest(name="quince"), metadata=bearer(answer.access_token), timeout=10
    )
    assert added.fruit.name == "quince"


async def test_a_created_user_signs_in_with_their_role(backend: RunningBackend) -> None:
    await backend.accounts.create_user(username="vera", password="vera-password-1", role=Role.VIEWER)
    answer = await login(backend, "vera", "vera-password-1")
    stub = fruits_pb2_grpc.FruitServiceStub(backend.plain_channel)

    await stub.ListFruits(fruits_pb2.ListFruitsRequest(), metadata=bearer(answer.access_token), timeout=10)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.AddFruit(
            fruits_pb2.AddFruitRequest(name="fig"), metadata=bearer(answer.access_token), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == (
        "fruitstack.v1.FruitService/AddFruit needs role editor or admin; user 'vera' has role viewer"
    )


@pytest.mark.parametrize(
    ("username", "password"), [("admin", "wrong-password"), ("nobody", "whatever-it-is")]
)
async def test_wrong_password_and_unknown_user_get_the_same_answer(
    backend: RunningBackend, username: str, password: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await login(backend, username, password)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == "wrong username or password"


@pytest.mark.parametrize(
    ("username", "password", "words"),
    [
        ("", "x", "username must not be empty"),
        ("a b", "x", "username may contain only letters"),
        ("admin", "x" * 1025, "password must be at most 1024 characters"),
    ],
)
async def test_malformed_logins_are_invalid_argument(
    backend: RunningBackend, username: str, password: str, words: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await login(backend, username, password)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (caught.value.details() or "")


async def test_repeated_failures_lock_the_username_even_for_the_right_password(
    backend: RunningBackend,
) -> None:
    # The test backend allows the default 5 failures per 300 s window.
    for _ in range(5):
        with pytest.raises(aio.AioRpcError) as caught:
            await login(backend, "admin", "guess-guess-guess")
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(aio.AioRpcError) as caught:
        await login(backend, "admin", TEST_ADMIN[1])
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (caught.value.details() or "").startswith("too many failed sign-ins for 'admin'; try again in ")
    # Other users are not affected.
    await backend.accounts.create_user(username="eddie", password="eddie-password", role=Role.EDITOR)
    assert (await login(backend, "eddie", "eddie-password")).user.role == auth_pb2.ROLE_EDITOR


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def users(mongodb_uri: str, mongodb_database: str) -> AsyncIterator[UserRepository]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    yield UserRepository(client, database=mongodb_database, timeout_s=5)
    await client.close()


async def test_the_limit_counts_within_its_window_and_a_success_resets_it(users: UserRepository) -> None:
    clock = Clock()
    accounts = Accounts(
        users,
        tokens=signing_tokens(),
        passwords=Passwords(),
        limit=LoginLimit(max_attempts=3, window_s=60),
        clock=clock,
    )
    await accounts.create_user(username="pat", password="pat-password-1", role=Role.VIEWER)

    async def fail() -> None:
        with pytest.raises(Unauthenticated):
            await accounts.login(username="pat", password="nope")

    # Two failures, then a success: the count starts over.
    await fail()
    await fail()
    await accounts.login(username="pat", password="pat-password-1")
    for _ in range(3):
        await fail()
    clock.now += 59
    with pytest.raises(ResourceExhausted, match=r"try again in 1 s"):
        await accounts.login(username="pat", password="pat-password-1")
    # The window has passed: logins are checked again.
    clock.now += 1
    assert (await accounts.login(username="pat", password="pat-password-1")).principal.username == "pat"


async def test_failures_spread_beyond_the_window_never_lock(users: UserRepository) -> None:
    clock = Clock()
    accounts = Accounts(
        users,
        tokens=signing_tokens(),
        passwords=Passwords(),
        limit=LoginLimit(max_attempts=2, window_s=60),
        clock=clock,
    )
    await accounts.create_user(username="sam", password="sam-password-1", role=Role.VIEWER)
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await accounts.login(username="sam", password="nope")
        clock.now += 61
    assert (await accounts.login(username="sam", password="sam-password-1")).principal.role is Role.VIEWER
