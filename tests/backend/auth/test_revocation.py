"""Every call checks its user's current state on a real server (real MongoDB): role, disabled,
token version, existence; a change through this process applies at once, one made elsewhere
within AUTH_USER_CACHE_S."""

from __future__ import annotations

import grpc
import pytest
from fruitstack.v1 import auth_pb2, auth_pb2_grpc, fruits_pb2, fruits_pb2_grpc
from grpc import aio

from backend.auth.roles import Role
from backend.server import access_tokens, open_accounts, open_mongo
from tests.fixtures.backend import RunningBackend, backend_settings, bearer, mint_token, running_backend

LIST_USERS = auth_pb2.ListUsersRequest()
LIST_FRUITS = fruits_pb2.ListFruitsRequest()


async def sign_in(backend: RunningBackend, username: str, password: str) -> str:
    stub = auth_pb2_grpc.AuthServiceStub(backend.plain_channel)
    answer = await stub.Login(auth_pb2.LoginRequest(username=username, password=password), timeout=10)
    return answer.access_token


async def refusal(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code(), caught.value.details() or ""


async def test_a_demoted_admin_loses_admin_calls_at_once(backend: RunningBackend) -> None:
    await backend.accounts.create_user(username="ann", password="ann-password-1", role=Role.ADMIN)
    token = await sign_in(backend, "ann", "ann-password-1")
    users = auth_pb2_grpc.AuthServiceStub(backend.plain_channel)
    await users.ListUsers(LIST_USERS, metadata=bearer(token), timeout=10)

    await backend.accounts.set_role(username="ann", role=Role.VIEWER)
    code, details = await refusal(users.ListUsers(LIST_USERS, metadata=bearer(token), timeout=10))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details.endswith("needs role admin; user 'ann' has role viewer")
    # The same token still reads: it names ann, and ann is a viewer now.
    fruits = fruits_pb2_grpc.FruitServiceStub(backend.plain_channel)
    await fruits.ListFruits(LIST_FRUITS, metadata=bearer(token), timeout=10)
    # And a promotion applies at once too: the role in the token is never what counts.
    await backend.accounts.set_role(username="ann", role=Role.ADMIN)
    await users.ListUsers(LIST_USERS, metadata=bearer(token), timeout=10)


async def test_a_change_made_elsewhere_applies_within_the_cache_time(
    mongodb_uri: str, mongodb_database: str
) -> None:
    """Two replicas on one database: one keeps users' states 60 s, one reads them on every call."""
    slow = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database, auth_user_cache_s=60)
    eager = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database, auth_user_cache_s=0)
    async with running_backend(slow) as caching, running_backend(eager) as reading:
        await caching.accounts.create_user(username="bo", password="bo-password-12", role=Role.VIEWER)
        token = bearer(await sign_in(caching, "bo", "bo-password-12"))
        for replica in (caching, reading):
            await fruits_pb2_grpc.FruitServiceStub(replica.plain_channel).ListFruits(
                LIST_FRUITS, metadata=token, timeout=10
            )
        # Disabled by a third process (as `python -m backend.auth disable bo` would).
        async with open_mongo(slow) as mongo:
            await open_accounts(mongo, slow, access_tokens(slow)).set_disabled(username="bo", disabled=True)
        # The replica that keeps states 60 s lets bo in until then; the other refuses at once.
        await fruits_pb2_grpc.FruitServiceStub(caching.plain_channel).ListFruits(
            LIST_FRUITS, metadata=token, timeout=10
        )
        code, details = await refusal(
            fruits_pb2_grpc.FruitServiceStub(reading.plain_channel).ListFruits(
                LIST_FRUITS, metadata=token, timeout=10
            )
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert details == "user 'bo' is disabled; an admin can enable it (AuthService/EnableUser)"


@pytest.mark.parametrize(
    ("token", "words"),
    [
        pytest.param(
            mint_token(Role.VIEWER, username="ghost"),
            "user 'ghost' no longer exists; its access tokens are void",
            id="no-such-user",
        ),
        pytest.param(
            mint_token(Role.VIEWER, version=1),
            "this access token of 'test-viewer' was revoked (the password was changed or the user"
            " disabled since it was issued); sign in again",
            id="another-version",
        ),
    ],
)
async def test_a_valid_signature_is_not_enough(backend: RunningBackend, token: str, words: str) -> None:
    code, details = await refusal(
        fruits_pb2_grpc.FruitServiceStub(backend.plain_channel).ListFruits(
            LIST_FRUITS, metadata=bearer(token), timeout=10
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details.startswith(words)
