"""Login over gRPC against real users in real MongoDB (the failed-login limit: test_login_limits)."""

from __future__ import annotations

import grpc
import pytest
from fruitstack.v1 import auth_pb2, auth_pb2_grpc, fruits_pb2, fruits_pb2_grpc
from grpc import aio

from backend.auth.roles import Role
from tests.fixtures.backend import TEST_ADMIN, RunningBackend, bearer


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
