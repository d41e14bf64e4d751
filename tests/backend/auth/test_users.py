"""User administration over gRPC (as admin), the first admin at start-up, and the CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import grpc
import pytest
from fruitstack.v1 import auth_pb2, auth_pb2_grpc, fruits_pb2, fruits_pb2_grpc
from grpc import aio
from pydantic import SecretStr

from scripts.processes import ROOT
from tests.fixtures.backend import (
    TEST_ADMIN,
    TEST_AUTH_TOKEN_SECRET,
    TEST_PAGE_TOKEN_SECRET,
    TEST_USERS,
    RunningBackend,
    backend_settings,
    running_backend,
)

EDITOR = auth_pb2.ROLE_EDITOR


def admin_stub(backend: RunningBackend) -> auth_pb2_grpc.AuthServiceAsyncStub:
    return auth_pb2_grpc.AuthServiceStub(backend.channel)  # carries an admin token


async def test_an_admin_creates_lists_and_re_roles_users(backend: RunningBackend) -> None:
    stub = admin_stub(backend)
    created = await stub.CreateUser(
        auth_pb2.CreateUserRequest(username="Alice", password="alice-password", role=auth_pb2.ROLE_VIEWER),
        timeout=10,
    )
    assert (created.user.username, created.user.role) == ("alice", auth_pb2.ROLE_VIEWER)

    changed = await stub.SetUserRole(
        auth_pb2.SetUserRoleRequest(username="alice", role=auth_pb2.ROLE_EDITOR), timeout=10
    )
    assert changed.user.role == auth_pb2.ROLE_EDITOR
    listed = await stub.ListUsers(auth_pb2.ListUsersRequest(), timeout=10)
    assert [(u.username, u.role) for u in listed.users if u.username not in TEST_USERS] == [
        ("admin", auth_pb2.ROLE_ADMIN),
        ("alice", auth_pb2.ROLE_EDITOR),
        ("retrainer", auth_pb2.ROLE_RETRAINER),  # the runner's service account, made at start-up
    ]
    assert all(u.created_at.seconds > 0 for u in listed.users)
    # A login answers with the current role.
    login = await auth_pb2_grpc.AuthServiceStub(backend.plain_channel).Login(
        auth_pb2.LoginRequest(username="alice", password="alice-password"), timeout=10
    )
    assert login.user.role == auth_pb2.ROLE_EDITOR


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (
            auth_pb2.CreateUserRequest(
                username="admin", password="long-enough-pass", role=auth_pb2.ROLE_VIEWER
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "a user named 'admin' exists already",
        ),
        (
            auth_pb2.CreateUserRequest(username="bob", password="short", role=auth_pb2.ROLE_VIEWER),
            grpc.StatusCode.INVALID_ARGUMENT,
            "password must be at least 12 characters long",
        ),
        (
            auth_pb2.CreateUserRequest(username="bob", password="long-enough-pass"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "role must be ROLE_VIEWER, ROLE_EDITOR, ROLE_ADMIN or ROLE_RETRAINER",
        ),
        (
            auth_pb2.CreateUserRequest(username="bob smith", password="long-enough-pass", role=EDITOR),
            grpc.StatusCode.INVALID_ARGUMENT,
            "username may contain only letters, digits",
        ),
        (
            auth_pb2.CreateUserRequest(username="x" * 65, password="long-enough-pass", role=EDITOR),
            grpc.StatusCode.INVALID_ARGUMENT,
            "username is 65 characters long; at most 64",
        ),
        (
            auth_pb2.SetUserRoleRequest(username="nobody", role=auth_pb2.ROLE_ADMIN),
            grpc.StatusCode.NOT_FOUND,
            "no user named 'nobody'",
        ),
        (
            auth_pb2.SetUserRoleRequest(username="admin", role=auth_pb2.ROLE_VIEWER),
            grpc.StatusCode.FAILED_PRECONDITION,
            "'admin' is the last admin",
        ),
        (
            auth_pb2.SetUserRoleRequest(username="admin", role=7),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
            "role must be ROLE_VIEWER, ROLE_EDITOR, ROLE_ADMIN or ROLE_RETRAINER",
        ),
    ],
)
async def test_bad_user_requests_say_what_is_wrong(
    backend: RunningBackend, request_: Any, code: grpc.StatusCode, words: str
) -> None:
    stub = admin_stub(backend)
    method = stub.CreateUser if isinstance(request_, auth_pb2.CreateUserRequest) else stub.SetUserRole
    with pytest.raises(aio.AioRpcError) as caught:
        await method(request_, timeout=10)
    assert caught.value.code() == code
    assert words in (caught.value.details() or "")


async def test_the_first_admin_is_created_once_and_never_overwritten(
    mongodb_uri: str, mongodb_database: str
) -> None:
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database)
    async with running_backend(settings):
        pass
    # A restart with another FIRST_ADMIN_PASSWORD keeps the stored one (an admin may have changed it).
    restarted = settings.model_copy(update={"first_admin_password": SecretStr("y" * 20)})
    async with running_backend(restarted) as backend:
        stub = auth_pb2_grpc.AuthServiceStub(backend.plain_channel)
        answer = await stub.Login(auth_pb2.LoginRequest(username="admin", password=TEST_ADMIN[1]), timeout=10)
        assert answer.user.role == auth_pb2.ROLE_ADMIN
        users = await backend.accounts.list_users()
    assert [u.username for u in users if u.username not in TEST_USERS] == ["admin", "retrainer"]


async def test_no_first_admin_without_a_password(mongodb_uri: str, mongodb_database: str) -> None:
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database)
    settings = settings.model_copy(
        update={"first_admin_password": SecretStr(""), "retrainer_password": SecretStr("")}
    )
    async with running_backend(settings) as backend:
        assert [u for u in await backend.accounts.list_users() if u.username not in TEST_USERS] == []


async def cli(*args: str, mongodb_uri: str, database: str, stdin: str = "") -> tuple[int, str]:
    env = {
        **os.environ,
        "MONGODB_URI": mongodb_uri,
        "MONGODB_DATABASE": database,
        "PAGE_TOKEN_SECRET": TEST_PAGE_TOKEN_SECRET,
        "AUTH_TOKEN_SECRET": TEST_AUTH_TOKEN_SECRET,
        "FIRST_ADMIN_PASSWORD": "",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.auth", *args,
        cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate(stdin.encode())
    return await proc.wait(), out.decode()


async def test_the_cli_creates_users_changes_roles_and_lists(
    backend: RunningBackend, mongodb_uri: str, mongodb_database: str
) -> None:
    def run(*args: str, stdin: str = "") -> asyncio.Future[tuple[int, str]]:
        return asyncio.ensure_future(
            cli(*args, mongodb_uri=mongodb_uri, database=mongodb_database, stdin=stdin)
        )

    assert await run(
        "create-user", "carol", "--role", "viewer", "--password-stdin", stdin="carol-password\n"
    ) == (
        0,
        "created carol (viewer)\n",
    )
    assert await run("set-role", "carol", "editor") == (0, "carol is now editor\n")
    code, out = await run("list")
    assert code == 0
    listed = [line.split()[:2] for line in out.splitlines() if line.split()[0] not in TEST_USERS]
    assert listed == [["admin", "admin"], ["carol", "editor"], ["retrainer", "retrainer"]]
    code, out = await run("create-user", "dave", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert (code, out) == (1, "backend.auth: password must be at least 12 characters long\n")
    # The user made by the CLI signs in over gRPC.
    answer = await auth_pb2_grpc.AuthServiceStub(backend.plain_channel).Login(
        auth_pb2.LoginRequest(username="carol", password="carol-password"), timeout=10
    )
    assert answer.user.role == auth_pb2.ROLE_EDITOR
    token = (("authorization", f"Bearer {answer.access_token}"),)
    fruits = fruits_pb2_grpc.FruitServiceStub(backend.plain_channel)
    await fruits.ListFruits(fruits_pb2.ListFruitsRequest(), metadata=token, timeout=10)

    # The lifecycle: each change is seen by the running backend (its cache of users' states is not
    # told: this test's backend re-reads a state at most AUTH_USER_CACHE_S later).
    assert await run("disable", "carol") == (0, "carol is disabled\n")
    code, out = await run("list")
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("carol")] == ["disabled"]
    assert await run("enable", "carol") == (0, "carol is enabled\n")
    assert await run("reset-password", "carol", "--password-stdin", stdin="carol-password-2\n") == (
        0,
        "the password of carol is reset; their tokens are revoked\n",
    )
    assert await run(
        "change-password", "carol", "--password-stdin", stdin="carol-password-2\ncarol-password-3\n"
    ) == (0, "the password of carol is changed; their older tokens are revoked\n")
    assert await run(
        "change-password", "carol", "--password-stdin", stdin="wrong-password\ncarol-password-4\n"
    ) == (
        1,
        "backend.auth: the current password is wrong; the password was not changed\n",
    )
    assert await run("delete", "admin") == (
        1,
        "backend.auth: 'admin' is the last admin; make another user admin before deleting this one\n",
    )
    assert await run("delete", "carol") == (0, "deleted carol\n")
    assert await run("delete", "carol") == (1, "backend.auth: no user named 'carol'\n")
