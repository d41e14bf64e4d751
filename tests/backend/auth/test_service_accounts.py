"""The retraining runner's service account: created by the backend, allowed one thing, kept in step
with its secret file, and never made out of a human's account."""

from __future__ import annotations

import logging

import grpc
import pytest
from fruitstack.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    fruits_pb2,
    fruits_pb2_grpc,
    predictions_pb2,
    predictions_pb2_grpc,
)
from grpc import aio
from pydantic import SecretStr

from backend.auth.roles import Role
from tests.fixtures.backend import TEST_RETRAINER, RunningBackend, backend_settings, bearer, running_backend


async def sign_in(backend: RunningBackend, username: str, password: str) -> auth_pb2.LoginResponse:
    stub = auth_pb2_grpc.AuthServiceStub(backend.plain_channel)
    return await stub.Login(auth_pb2.LoginRequest(username=username, password=password), timeout=10)


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_the_runner_signs_in_and_may_only_ask_for_the_champion(backend: RunningBackend) -> None:
    login = await sign_in(backend, *TEST_RETRAINER)
    assert login.user.role == auth_pb2.ROLE_RETRAINER
    token = bearer(login.access_token)
    predictions = predictions_pb2_grpc.PredictionServiceStub(backend.plain_channel)
    users = auth_pb2_grpc.AuthServiceStub(backend.plain_channel)
    fruits = fruits_pb2_grpc.FruitServiceStub(backend.plain_channel)

    # Past the policy: no model service answers this test backend, so the switch itself is UNAVAILABLE.
    served = await code_of(
        predictions.ServeChampion(predictions_pb2.ServeChampionRequest(), metadata=token, timeout=10)
    )
    assert served == grpc.StatusCode.UNAVAILABLE
    refused = [
        predictions.UpdateModel(predictions_pb2.UpdateModelRequest(version="1"), metadata=token, timeout=10),
        predictions.UpdateModel(predictions_pb2.UpdateModelRequest(), metadata=token, timeout=10),
        predictions.GetModel(predictions_pb2.GetModelRequest(), metadata=token, timeout=10),
        users.ListUsers(auth_pb2.ListUsersRequest(), metadata=token, timeout=10),
        fruits.ListFruits(fruits_pb2.ListFruitsRequest(), metadata=token, timeout=10),
    ]
    assert [await code_of(call) for call in refused] == [grpc.StatusCode.PERMISSION_DENIED] * len(refused)


async def test_the_secret_file_is_the_truth_at_each_start(mongodb_uri: str, mongodb_database: str) -> None:
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database)
    async with running_backend(settings) as backend:
        await backend.wait_for_status("fruitstack.v1.AuthService", "SERVING")
    rotated = settings.model_copy(update={"retrainer_password": SecretStr("a-rotated-retrainer-password")})
    async with running_backend(rotated) as backend:
        await backend.wait_for_status("fruitstack.v1.AuthService", "SERVING")
        login = await sign_in(backend, TEST_RETRAINER[0], "a-rotated-retrainer-password")
        assert login.user.role == auth_pb2.ROLE_RETRAINER
        with pytest.raises(aio.AioRpcError) as caught:
            await sign_in(backend, *TEST_RETRAINER)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_human_of_that_name_is_never_turned_into_the_service_account(
    mongodb_uri: str, mongodb_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database)
    no_service = settings.model_copy(update={"retrainer_password": SecretStr("")})
    async with running_backend(no_service) as backend:
        await backend.wait_for_status("fruitstack.v1.AuthService", "SERVING")
        await backend.accounts.create_user(
            username=TEST_RETRAINER[0], password="a-human-s-own-password", role=Role.ADMIN
        )
    with caplog.at_level(logging.ERROR, logger="backend.auth.accounts"):
        async with running_backend(settings) as backend:
            # The rest of the backend serves on: a misconfigured service account is not an outage.
            await backend.wait_for_status("fruitstack.v1.AuthService", "SERVING")
            login = await sign_in(backend, TEST_RETRAINER[0], "a-human-s-own-password")
            assert login.user.role == auth_pb2.ROLE_ADMIN
            with pytest.raises(aio.AioRpcError):
                await sign_in(backend, *TEST_RETRAINER)
    assert "'retrainer' is a user with role admin, not the retrainer service account" in caplog.text
