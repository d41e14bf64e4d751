"""The user lifecycle over gRPC on a real server (real MongoDB): disable and enable, delete, one's
own password and an admin's reset, each revoking what it should, and the last admin kept."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from fruitstack.v1 import auth_pb2, auth_pb2_grpc, fruits_pb2, fruits_pb2_grpc
from grpc import aio

from backend.auth.roles import Role
from tests.fixtures.backend import TEST_ADMIN, RunningBackend, bearer

VIEWER = auth_pb2.ROLE_VIEWER
LIST_FRUITS = fruits_pb2.ListFruitsRequest()


def admin(backend: RunningBackend) -> auth_pb2_grpc.AuthServiceAsyncStub:
    return auth_pb2_grpc.AuthServiceStub(backend.channel)  # carries the first admin's token


def anyone(backend: RunningBackend) -> auth_pb2_grpc.AuthServiceAsyncStub:
    return auth_pb2_grpc.AuthServiceStub(backend.plain_channel)


async def sign_in(backend: RunningBackend, username: str, password: str) -> str:
    request = auth_pb2.LoginRequest(username=username, password=password)
    return (await anyone(backend).Login(request, timeout=10)).access_token


async def list_fruits(backend: RunningBackend, token: str) -> None:
    await fruits_pb2_grpc.FruitServiceStub(backend.plain_channel).ListFruits(
        LIST_FRUITS, metadata=bearer(token), timeout=10
    )


async def refused(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


async def new_user(backend: RunningBackend, name: str, role: Role = Role.VIEWER) -> str:
    """Create `name` (password "<name>-password-1") and sign in: their token."""
    await backend.accounts.create_user(username=name, password=f"{name}-password-1", role=role)
    return await sign_in(backend, name, f"{name}-password-1")


async def test_a_disabled_user_is_refused_at_once_and_enabling_does_not_revive_old_tokens(
    backend: RunningBackend,
) -> None:
    token = await new_user(backend, "cy")
    await list_fruits(backend, token)

    answer = await admin(backend).DisableUser(auth_pb2.DisableUserRequest(username="cy"), timeout=10)
    assert answer.user.disabled
    assert await refused(list_fruits(backend, token)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "user 'cy' is disabled; an admin can enable it (AuthService/EnableUser)",
    )
    assert await refused(sign_in(backend, "cy", "cy-password-1")) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "user 'cy' is disabled; an admin can enable it",
    )
    listed = await admin(backend).ListUsers(auth_pb2.ListUsersRequest(), timeout=10)
    assert [u.disabled for u in listed.users if u.username == "cy"] == [True]

    await admin(backend).EnableUser(auth_pb2.EnableUserRequest(username="cy"), timeout=10)
    code, details = await refused(list_fruits(backend, token))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details.startswith("this access token of 'cy' was revoked")
    await list_fruits(backend, await sign_in(backend, "cy", "cy-password-1"))


async def test_a_deleted_user_is_refused_and_a_new_user_of_that_name_gets_none_of_their_tokens(
    backend: RunningBackend,
) -> None:
    token = await new_user(backend, "dee")
    await admin(backend).DeleteUser(auth_pb2.DeleteUserRequest(username="dee"), timeout=10)
    assert await refused(list_fruits(backend, token)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "user 'dee' no longer exists; its access tokens are void",
    )
    assert (await refused(sign_in(backend, "dee", "dee-password-1")))[0] == grpc.StatusCode.UNAUTHENTICATED

    await backend.accounts.create_user(username="dee", password="another-password", role=Role.ADMIN)
    code, details = await refused(list_fruits(backend, token))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details.startswith("this access token of 'dee' was revoked")
    code, details = await refused(
        admin(backend).DeleteUser(auth_pb2.DeleteUserRequest(username="nobody"), timeout=10)
    )
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "no user named 'nobody'")


async def test_a_password_change_revokes_older_tokens_and_answers_a_new_one(backend: RunningBackend) -> None:
    token = await new_user(backend, "di")
    request = auth_pb2.ChangePasswordRequest(old_password="di-password-1", new_password="di-password-2")
    answer = await anyone(backend).ChangePassword(request, metadata=bearer(token), timeout=10)

    code, details = await refused(list_fruits(backend, token))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details.startswith("this access token of 'di' was revoked (the password was changed")
    await list_fruits(backend, answer.access_token)
    assert answer.expires_at.seconds > 0
    assert (await refused(sign_in(backend, "di", "di-password-1")))[0] == grpc.StatusCode.UNAUTHENTICATED
    await list_fruits(backend, await sign_in(backend, "di", "di-password-2"))


@pytest.mark.parametrize(
    ("old", "new", "code", "words"),
    [
        (
            "not-my-password",
            "di-password-2",
            grpc.StatusCode.UNAUTHENTICATED,
            "the current password is wrong",
        ),
        ("di-password-1", "short", grpc.StatusCode.INVALID_ARGUMENT, "at least 12 characters"),
        (
            "di-password-1",
            "di-password-1",
            grpc.StatusCode.INVALID_ARGUMENT,
            "the new password is the current one",
        ),
    ],
)
async def test_a_refused_password_change_changes_nothing(
    backend: RunningBackend, old: str, new: str, code: grpc.StatusCode, words: str
) -> None:
    token = await new_user(backend, "di")
    request = auth_pb2.ChangePasswordRequest(old_password=old, new_password=new)
    got_code, details = await refused(
        anyone(backend).ChangePassword(request, metadata=bearer(token), timeout=10)
    )
    assert got_code == code
    assert words in details
    await list_fruits(backend, token)  # still signed in
    await sign_in(backend, "di", "di-password-1")


async def test_an_admin_resets_a_password_and_the_users_tokens_stop(backend: RunningBackend) -> None:
    token = await new_user(backend, "flo")
    request = auth_pb2.ResetPasswordRequest(username="flo", new_password="set-by-the-admin")
    await admin(backend).ResetPassword(request, timeout=10)
    assert (await refused(list_fruits(backend, token)))[0] == grpc.StatusCode.UNAUTHENTICATED
    await list_fruits(backend, await sign_in(backend, "flo", "set-by-the-admin"))


async def test_the_last_admin_can_be_neither_disabled_nor_deleted_nor_demoted(
    backend: RunningBackend,
) -> None:
    stub = admin(backend)
    last = "'admin' is the last admin; make another user admin before"
    for call in (
        stub.DisableUser(auth_pb2.DisableUserRequest(username=TEST_ADMIN[0]), timeout=10),
        stub.DeleteUser(auth_pb2.DeleteUserRequest(username=TEST_ADMIN[0]), timeout=10),
    ):
        code, details = await refused(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.startswith(last)
    # A disabled admin does not count: "admin" is still the last one who can act.
    await backend.accounts.create_user(username="gus", password="gus-password-1", role=Role.ADMIN)
    await stub.DisableUser(auth_pb2.DisableUserRequest(username="gus"), timeout=10)
    code, details = await refused(
        stub.SetUserRole(auth_pb2.SetUserRoleRequest(username=TEST_ADMIN[0], role=VIEWER), timeout=10)
    )
    assert (code, details.startswith(last)) == (grpc.StatusCode.FAILED_PRECONDITION, True)
    # With gus enabled again, admin may go; then gus is the last.
    await stub.EnableUser(auth_pb2.EnableUserRequest(username="gus"), timeout=10)
    gus = await sign_in(backend, "gus", "gus-password-1")
    await stub.DeleteUser(auth_pb2.DeleteUserRequest(username=TEST_ADMIN[0]), timeout=10)
    code, details = await refused(
        anyone(backend).DisableUser(
            auth_pb2.DisableUserRequest(username="gus"), metadata=bearer(gus), timeout=10
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.startswith("'gus' is the last admin")
