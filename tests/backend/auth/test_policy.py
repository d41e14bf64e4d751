"""The policy table: complete, and every row enforced both ways on a real server (real MongoDB).

A new RPC without a row fails `test_every_served_method_has_a_row` until someone decides who may
call it; until then the server refuses it for everyone (`test_a_method_without_a_row_is_refused`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fruitstack.v1
import grpc
import pytest
from fruitstack.v1 import auth_pb2, fruits_pb2, fruits_pb2_grpc, predictions_pb2
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from grpc import aio
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from pymongo import AsyncMongoClient

from backend.auth.interceptor import AuthInterceptor
from backend.auth.policy import POLICY, Rule
from backend.auth.repository import UserRepository
from backend.auth.roles import Role
from backend.auth.user_states import UserStates
from backend.interceptors import ErrorMappingInterceptor
from backend.mongo import Document
from scripts.processes import free_port
from tests.fixtures.backend import (
    RunningBackend,
    backend_settings,
    bearer,
    mint_token,
    running_backend,
    signing_tokens,
)


def fruitstack_files() -> list[FileDescriptor]:
    """Every generated fruitstack.v1 module's file descriptor, found by listing the package, so that
    a service in a new .proto file is covered without editing this test."""
    names = sorted(m.name for m in pkgutil.iter_modules(fruitstack.v1.__path__) if m.name.endswith("_pb2"))
    return [importlib.import_module(f"fruitstack.v1.{name}").DESCRIPTOR for name in names]


FRUITSTACK_FILES = fruitstack_files()
INFRASTRUCTURE_FILES: list[FileDescriptor] = [health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR]

REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def methods(files: list[FileDescriptor]) -> Iterator[MethodDescriptor]:
    for file in files:
        for service in file.services_by_name.values():
            yield from service.methods


def full_name(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


ALL_METHODS = {full_name(m): m for m in methods(FRUITSTACK_FILES + INFRASTRUCTURE_FILES)}


def test_the_descriptors_are_found() -> None:
    assert {f.name for f in FRUITSTACK_FILES} >= {
        auth_pb2.DESCRIPTOR.name,
        fruits_pb2.DESCRIPTOR.name,
        predictions_pb2.DESCRIPTOR.name,
    }


def test_every_served_method_has_a_row() -> None:
    missing = sorted(set(ALL_METHODS) - set(POLICY))
    assert not missing, f"add a row to backend/auth/policy.py for: {', '.join(missing)}"


def test_every_row_names_a_served_method() -> None:
    stale = sorted(set(POLICY) - set(ALL_METHODS))
    assert not stale, f"rows for methods no service has: {', '.join(stale)}"


def test_the_rows_say_what_the_issue_asks() -> None:
    def rule(name: str) -> Rule:
        return POLICY[f"/fruitstack.v1.{name}"]

    assert all(POLICY[name].roles is None for name in ALL_METHODS if name.startswith("/grpc."))
    assert rule("AuthService/Login").roles is None
    editors = frozenset({Role.EDITOR, Role.ADMIN})
    admins = frozenset({Role.ADMIN})
    assert rule("FruitService/AddFruit").roles == rule("FruitService/DeleteFruit").roles == editors
    assert rule("PredictionService/UpdateModel").roles == admins
    assert rule("RetrainingService/Retrain").roles == admins  # retraining switches the model
    assert rule("MonitoringService/RecordFeedback").roles == editors  # labels become training data
    assert rule("AuthService/CreateUser").roles == admins
    # The runner's service account may switch to the champion and nothing else.
    assert [name for name, r in POLICY.items() if r.allows(Role.RETRAINER) and r.roles is not None] == [
        "/fruitstack.v1.PredictionService/ServeChampion"
    ]
    assert rule("PredictionService/ServeChampion").roles == frozenset({Role.ADMIN, Role.RETRAINER})
    assert rule("MonitoringService/GetDriftReport").anonymous_read
    for name in ("DisableUser", "EnableUser", "DeleteUser", "ResetPassword"):
        assert rule(f"AuthService/{name}").roles == admins
    # One's own password: any signed-in person, but never without a token, never a service account.
    assert rule("AuthService/ChangePassword") == Rule(roles=Role.at_least(Role.VIEWER), anonymous_read=False)
    assert rule("FruitService/ListFruits").anonymous_read
    assert not rule("FruitService/AddFruit").anonymous_read


async def call(
    channel: aio.Channel, name: str, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.StatusCode:
    """Call a method with an empty request message; the status it ends with (OK for a first answer)."""
    method = ALL_METHODS[name]
    try:
        if method.client_streaming:
            multi: Any = (channel.stream_stream if method.server_streaming else channel.stream_unary)(
                name, None, None
            )
            stream = multi(iter([b""]), metadata=metadata, timeout=10)
        else:
            multi = (channel.unary_stream if method.server_streaming else channel.unary_unary)(
                name, None, None
            )
            stream = multi(b"", metadata=metadata, timeout=10)
        if method.server_streaming:
            await stream.read()  # the first answer (or the error) is enough
            stream.cancel()
        else:
            await stream
    except aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def details(channel: aio.Channel, name: str, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    try:
        await channel.unary_unary(name, None, None)(b"", metadata=metadata, timeout=10)
    except aio.AioRpcError as exc:
        return exc.details() or ""
    raise AssertionError(f"{name} succeeded")


GUARDED = sorted(name for name, rule in POLICY.items() if rule.roles is not None)
PUBLIC = sorted(name for name, rule in POLICY.items() if rule.roles is None)


@pytest.mark.parametrize("name", PUBLIC)
async def test_public_methods_need_no_token(backend: RunningBackend, name: str) -> None:
    assert await call(backend.plain_channel, name) not in REFUSED


@pytest.mark.parametrize("name", GUARDED)
async def test_each_guarded_method_lets_its_roles_through(backend: RunningBackend, name: str) -> None:
    roles = POLICY[name].roles
    assert roles
    for allowed in roles:
        # Past the policy the empty request may still fail (INVALID_ARGUMENT, UNAVAILABLE: no model).
        code = await call(backend.plain_channel, name, bearer(mint_token(allowed)))
        assert code not in REFUSED, f"{name} refused {allowed.label}: {code.name}"


@pytest.mark.parametrize("name", GUARDED)
async def test_each_guarded_method_refuses_a_call_without_a_token(backend: RunningBackend, name: str) -> None:
    rule = POLICY[name]
    assert await call(backend.plain_channel, name) == grpc.StatusCode.UNAUTHENTICATED
    if not ALL_METHODS[name].client_streaming and not ALL_METHODS[name].server_streaming:
        message = await details(backend.plain_channel, name)
        assert f"{name.lstrip('/')} needs a signed-in user with {rule.describe()}" in message
        assert "authorization: Bearer <token>" in message


@pytest.mark.parametrize("name", GUARDED)
async def test_each_guarded_method_refuses_every_other_role(backend: RunningBackend, name: str) -> None:
    """Every role the row does not name is refused: weaker humans, and the service account."""
    rule = POLICY[name]
    for other in sorted(set(Role) - (rule.roles or set())):
        metadata = bearer(mint_token(other))
        assert await call(backend.plain_channel, name, metadata) == grpc.StatusCode.PERMISSION_DENIED
        if not ALL_METHODS[name].client_streaming and not ALL_METHODS[name].server_streaming:
            message = await details(backend.plain_channel, name, metadata)
            who = f"user 'test-{other.label}' has role {other.label}"
            assert message == f"{name.lstrip('/')} needs {rule.describe()}; {who}"


def test_messages_name_the_roles_that_may() -> None:
    assert POLICY["/fruitstack.v1.FruitService/AddFruit"].describe() == "role editor or admin"
    assert POLICY["/fruitstack.v1.FruitService/ListFruits"].describe() == "role viewer, editor or admin"
    assert POLICY["/fruitstack.v1.PredictionService/UpdateModel"].describe() == "role admin"
    assert POLICY["/fruitstack.v1.PredictionService/ServeChampion"].describe() == "role admin or retrainer"


@pytest.fixture
async def anonymous_reads(mongodb_uri: str, mongodb_database: str) -> AsyncIterator[RunningBackend]:
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database)
    async with running_backend(settings.model_copy(update={"allow_anonymous_reads": True})) as running:
        yield running


@pytest.mark.parametrize("name", GUARDED)
async def test_anonymous_reads_open_only_the_read_rows(anonymous_reads: RunningBackend, name: str) -> None:
    code = await call(anonymous_reads.plain_channel, name)
    if POLICY[name].anonymous_read:
        assert code not in REFUSED
    else:
        assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_anonymous_reads_still_refuse_a_bad_token(anonymous_reads: RunningBackend) -> None:
    """A caller that sends a token means to be someone: an expired or forged one is an error."""
    stub = fruits_pb2_grpc.FruitServiceStub(anonymous_reads.plain_channel)
    await stub.ListFruits(fruits_pb2.ListFruitsRequest(), timeout=10)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListFruits(fruits_pb2.ListFruitsRequest(), metadata=bearer("not-a-token"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


class _Fruits(fruits_pb2_grpc.FruitServiceServicer):
    async def ListFruits(
        self, request: fruits_pb2.ListFruitsRequest, context: aio.ServicerContext[Any, Any]
    ) -> fruits_pb2.ListFruitsResponse:
        return fruits_pb2.ListFruitsResponse()


async def test_a_method_without_a_row_is_refused() -> None:
    """Fail closed: a policy that lacks a served method refuses it, even to an admin."""
    policy = {k: v for k, v in POLICY.items() if k != "/fruitstack.v1.FruitService/ListFruits"}
    # A user store nobody listens on: the refusal comes before any user is looked up.
    nowhere: AsyncMongoClient[Document] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}", connect=False
    )
    users = UserStates(UserRepository(nowhere, database="unused", timeout_s=1), cache_s=0)
    interceptors = [
        ErrorMappingInterceptor(),
        AuthInterceptor(policy=policy, tokens=signing_tokens(), users=users, allow_anonymous_reads=True),
    ]
    server = aio.server(interceptors=interceptors)
    fruits_pb2_grpc.add_FruitServiceServicer_to_server(_Fruits(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = fruits_pb2_grpc.FruitServiceStub(channel)
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.ListFruits(
                    fruits_pb2.ListFruitsRequest(), metadata=bearer(mint_token(Role.ADMIN)), timeout=10
                )
    finally:
        await server.stop(0)
        await nowhere.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == (
        "fruitstack.v1.FruitService/ListFruits has no row in the access policy"
        " (backend/auth/policy.py), so it is refused for everyone"
    )
