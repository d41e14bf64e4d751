"""Fuzzing: every RPC of every fruitstack.v1 service, with requests drawn from its
message descriptors, against a live backend in front of a real model service and MongoDB.

Each method gets its own hypothesis run (a fixed number of examples, derandomized, no example
database, so CI sends the same requests every time). A request is a drawn message, or bytes that are
not one; a streaming method gets a short stream of them. Every call has a deadline: 20 s, or for one
call in four one that runs out on the way; one call in four carries a missing, malformed, tampered or
viewer's token instead of the admin's. Asserted on every answer:

- the status is one the backend documents (the codes backend/interceptors.py maps its exception
  tree to); never UNKNOWN; INTERNAL only for undecodable bytes, and then with the plain parse message
  (an INTERNAL "internal error" is a servicer crash);
- a refusal carries a message, shorter than 4 KB;
- the server logs no error (such as the error mapping's "failed unexpectedly").

Afterwards every service reports SERVING and a normal Predict works. The backend is this module's
own, with its own database and its own model service: UpdateModel makes the version it names the
champion (a "manual" gate decision in the registry), which the session's shared model must not see.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import pkgutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import fruitstack.v1
import grpc
import pytest
from fruitstack.v1 import auth_pb2, fruits_pb2, monitoring_pb2, predictions_pb2, retraining_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from backend.auth.roles import Role
from backend.health_watcher import (
    AUTH_SERVICE,
    FRUIT_SERVICE,
    MONITORING_SERVICE,
    OVERALL,
    PREDICTION_SERVICE,
)
from backend.interceptors import STATUS_CODES
from backend.prediction import wire
from tests.fixtures.backend import TEST_ADMIN, RunningBackend, backend_in_front_of, bearer, mint_token
from tests.fixtures.model_service import ModelService, StartModelService
from tests.fuzz.strategies import Payload, requests, sometimes

# Examples per method. Login and CreateUser hash or check a password with argon2 (tens of ms of CPU
# each, two at a time), so they get fewer.
DEFAULT_EXAMPLES = 100
EXAMPLES = {
    "/fruitstack.v1.AuthService/Login": 15,
    "/fruitstack.v1.AuthService/CreateUser": 15,
}
CALL_TIMEOUT_S = 20.0
# Statuses the backend documents: whatever its one mapping (backend/interceptors.py) can answer.
# INTERNAL is MalformedRequest's, so it is allowed for undecodable bytes only (checked apart).
DOCUMENTED = {grpc.StatusCode.OK, *STATUS_CODES.values()} - {grpc.StatusCode.INTERNAL}
PARSE_FAILURE = "the request could not be parsed"
MAX_DETAILS_BYTES = 4096


def fruitstack_services() -> list[ServiceDescriptor]:
    """Every service of every generated fruitstack.v1 module, found by listing the package, so that a
    service in a new .proto file (or a new RPC in an old one) is fuzzed without editing this file."""
    names = sorted(m.name for m in pkgutil.iter_modules(fruitstack.v1.__path__) if m.name.endswith("_pb2"))
    files = [importlib.import_module(f"fruitstack.v1.{name}").DESCRIPTOR for name in names]
    return [service for file in files for service in file.services_by_name.values()]


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


SERVICES = fruitstack_services()
METHODS = [method for service in SERVICES for method in service.methods]


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str


@dataclass
class MethodLog:
    """What one method's run sent and got back, for the table."""

    examples: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass(repr=False)  # its repr would fill a failure's report
class Target:
    backend: RunningBackend
    # Synchronous: grpc.aio's client replaces the server's status with INTERNAL "Internal error from
    # Core" when the server ends a client stream (PredictBatch) before the client has sent all of it
    # (grpc/grpc#36066); the synchronous client reports the server's status, which is what is checked.
    channel: grpc.Channel
    # Strings the server knows (feature names, ids, usernames): mixed into every string field.
    words: tuple[str, ...]
    # Real requests per method, which the fuzzer mutates to get past validation.
    seeds: dict[str, list[Message]]
    # A valid Predict, for the health check afterwards.
    predict: predictions_pb2.PredictRequest
    classes: tuple[str, ...]
    log: dict[str, MethodLog] = field(default_factory=dict)


@pytest.fixture(scope="module")
def fuzz_model_service(model_service_factory: StartModelService) -> Iterator[ModelService]:
    """A model service of this module alone (its own registered copy of the template's version 1)."""
    service = model_service_factory()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def fuzz_database(mongodb_uri: str) -> Iterator[str]:
    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    yield name
    client: MongoClient[dict[str, object]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=2000)
    with client, contextlib.suppress(PyMongoError):
        client.drop_database(name)


@pytest.fixture(scope="module")
async def target(
    fuzz_model_service: ModelService, mongodb_uri: str, fuzz_database: str
) -> AsyncIterator[Target]:
    async with backend_in_front_of(fuzz_model_service.url, mongodb_uri, fuzz_database) as backend:
        for service in (FRUIT_SERVICE, PREDICTION_SERVICE, AUTH_SERVICE):
            await backend.wait_for_status(service, "SERVING", timeout_s=60)
        with grpc.insecure_channel(backend.target) as channel:
            yield await _target(backend, channel)


async def _target(backend: RunningBackend, channel: grpc.Channel) -> Target:
    """Real ids and names from the live server, and a seed request for each method that takes input."""
    model = (await backend.predictions.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model
    row = {f.name: f.mean for f in model.features}
    predict = predictions_pb2.PredictRequest(features=row)
    predicted = await backend.predictions.Predict(predict, timeout=10)
    fruit = (await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="kiwi"), timeout=10)).fruit
    await backend.fruits.AddFruit(fruits_pb2.AddFruitRequest(name="fig"), timeout=10)
    page = await backend.fruits.ListFruits(fruits_pb2.ListFruitsRequest(page_size=1), timeout=10)
    now = int(time.time())
    last_hour = monitoring_pb2.TimeRange(start=Timestamp(seconds=now - 3600), end=Timestamp(seconds=now + 60))
    username, password = TEST_ADMIN
    words = (
        *row,
        *model.classes,
        model.version,
        predicted.prediction_id,
        fruit.id,
        page.next_page_token,
        username,
        "fuzz-user",
    )
    seeds: dict[str, list[Message]] = {
        "/fruitstack.v1.PredictionService/Predict": [predict],
        "/fruitstack.v1.PredictionService/PredictBatch": [
            wire.bulk_request({n: [v] for n, v in row.items()})
        ],
        "/fruitstack.v1.PredictionService/UpdateModel": [
            predictions_pb2.UpdateModelRequest(version=model.version)
        ],
        "/fruitstack.v1.FruitService/AddFruit": [fruits_pb2.AddFruitRequest(name="kiwi")],
        "/fruitstack.v1.FruitService/ListFruits": [
            fruits_pb2.ListFruitsRequest(page_size=1, page_token=page.next_page_token)
        ],
        "/fruitstack.v1.FruitService/DeleteFruit": [fruits_pb2.DeleteFruitRequest(id=fruit.id)],
        "/fruitstack.v1.MonitoringService/RecordFeedback": [
            monitoring_pb2.RecordFeedbackRequest(
                prediction_id=predicted.prediction_id, label=model.classes[0]
            )
        ],
        "/fruitstack.v1.MonitoringService/GetDriftReport": [
            monitoring_pb2.GetDriftReportRequest(last_predictions=100, model_version=model.version),
            monitoring_pb2.GetDriftReportRequest(time_range=last_hour),
        ],
        "/fruitstack.v1.MonitoringService/GetLiveAccuracy": [
            monitoring_pb2.GetLiveAccuracyRequest(time_range=last_hour, interval_s=60)
        ],
        "/fruitstack.v1.MonitoringService/GetPredictionCounts": [
            monitoring_pb2.GetPredictionCountsRequest(time_range=last_hour, interval_s=60)
        ],
        "/fruitstack.v1.RetrainingService/Retrain": [retraining_pb2.RetrainRequest(reason="fuzz")],
        "/fruitstack.v1.RetrainingService/GetRetrainingStatus": [
            retraining_pb2.GetRetrainingStatusRequest(limit=5)
        ],
        "/fruitstack.v1.AuthService/Login": [auth_pb2.LoginRequest(username=username, password=password)],
        "/fruitstack.v1.AuthService/CreateUser": [
            auth_pb2.CreateUserRequest(
                username="fuzz-user", password="a-long-enough-password", role=auth_pb2.ROLE_VIEWER
            )
        ],
        "/fruitstack.v1.AuthService/SetUserRole": [
            auth_pb2.SetUserRoleRequest(username=username, role=auth_pb2.ROLE_ADMIN)
        ],
    }
    return Target(backend, channel, words, seeds, predict, tuple(model.classes))


# Call metadata: the admin's token, or none, or one that is malformed, tampered with or too weak.
Credentials = tuple[tuple[str, str], ...]
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


def credentials() -> st.SearchStrategy[Credentials]:
    admin = mint_token(Role.ADMIN, username=TEST_ADMIN[0])
    tampered = st.integers(0, len(admin) - 1).map(
        lambda i: admin[:i] + ("A" if admin[i] != "A" else "B") + admin[i + 1 :]
    )
    fuzzed: st.SearchStrategy[Credentials] = st.one_of(
        st.just(()),
        st.just(bearer(mint_token(Role.VIEWER))),
        tampered.map(bearer),
        _HEADER_TEXT.map(bearer),
        _HEADER_TEXT.map(lambda text: (("authorization", text),)),
    )
    return sometimes(st.just(bearer(admin)), fuzzed, one_in=4)


# Most calls have room; one in four a deadline that runs out on the way (down to before it is sent).
DEADLINES = sometimes(st.just(CALL_TIMEOUT_S), st.floats(0.001, 0.3), one_in=4)


def _wire(payload: Payload) -> bytes:
    return payload if isinstance(payload, bytes) else payload.SerializeToString()


def call(
    channel: grpc.Channel,
    method: MethodDescriptor,
    request: Payload | list[Payload],
    *,
    deadline_s: float,
    auth: Credentials,
) -> Outcome:
    """One call of any method through the generic channel API, whatever its kind of streaming."""
    kwargs: dict[str, Any] = {
        "request_serializer": _wire,
        "response_deserializer": GetMessageClass(method.output_type).FromString,
    }
    options: dict[str, Any] = {"timeout": deadline_s, "metadata": auth}
    path = path_of(method)
    try:
        if method.client_streaming:
            assert isinstance(request, list)
            if method.server_streaming:
                for _ in channel.stream_stream(path, **kwargs)(iter(request), **options):
                    pass  # every answer is parsed (response_deserializer), then dropped
            else:
                channel.stream_unary(path, **kwargs)(iter(request), **options)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, **kwargs)(request, **options):
                pass
        else:
            channel.unary_unary(path, **kwargs)(request, **options)
    except grpc.RpcError as exc:
        failed = cast(grpc.Call, exc)  # the error a failed call raises is that call
        return Outcome(failed.code(), failed.details() or "")
    return Outcome(grpc.StatusCode.OK, "")


def check(outcome: Outcome, request: Payload | list[Payload]) -> None:
    sent = request if isinstance(request, list) else [request]
    raw = any(isinstance(p, bytes) for p in sent)
    code, details = outcome.code, outcome.details
    assert code is not grpc.StatusCode.UNKNOWN, f"UNKNOWN (a servicer crashed): {details[:300]!r}"
    if code is grpc.StatusCode.INTERNAL:
        assert raw, f"INTERNAL for a decodable request: {details[:300]!r}"
        assert details.startswith(PARSE_FAILURE), f"INTERNAL other than a parse failure: {details[:300]!r}"
    else:
        assert code in DOCUMENTED, f"undocumented status {code.name}: {details[:300]!r}"
    if code is not grpc.StatusCode.OK:
        assert details.strip(), f"{code.name} without a message"
        assert len(details.encode()) < MAX_DETAILS_BYTES, f"{code.name} message of {len(details)} chars"


def test_every_rpc_of_every_fruitstack_service_is_fuzzed() -> None:
    assert {s.name for s in SERVICES} == {
        "FruitService",
        "PredictionService",
        "MonitoringService",
        "RetrainingService",
        "AuthService",
    }
    assert len(METHODS) == sum(len(s.methods) for s in SERVICES) > 0
    assert len({path_of(m) for m in METHODS}) == len(METHODS)
    assert set(EXAMPLES) <= {path_of(m) for m in METHODS}, "EXAMPLES names a method that is gone"


async def test_the_server_serves_exactly_the_services_fuzzed(target: Target) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(target.backend.channel)
    asked = reflection_pb2.ServerReflectionRequest(list_services="")
    async for answer in stub.ServerReflectionInfo(iter([asked]), timeout=10):
        served = {s.name for s in answer.list_services_response.service}
    assert {s for s in served if s.startswith("fruitstack.")} == {s.full_name for s in SERVICES}


@pytest.mark.parametrize("method", METHODS, ids=path_of)
async def test_fuzz(target: Target, method: MethodDescriptor, caplog: pytest.LogCaptureFixture) -> None:
    path = path_of(method)
    strategy = requests(method, words=target.words, seeds=target.seeds.get(path, ()))
    log = target.log[path] = MethodLog()

    @settings(
        max_examples=EXAMPLES.get(path, DEFAULT_EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        # Big drawn messages and a live server make examples slow to build and to answer; that is
        # the point here, not a problem of the strategy.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(request=strategy, timeout=DEADLINES, auth=credentials())
    def fuzz(request: Payload | list[Payload], timeout: float, auth: Credentials) -> None:
        outcome = call(target.channel, method, request, deadline_s=timeout, auth=auth)
        log.examples += 1
        log.statuses[outcome.code.name] += 1
        check(outcome, request)

    began = time.perf_counter()
    with caplog.at_level(logging.ERROR):
        # The server runs on this test's event loop, so the calls leave it free: they are made from
        # a worker thread, where hypothesis runs.
        await asyncio.to_thread(fuzz)
    log.seconds = time.perf_counter() - began
    crashes = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and not _gone(r)]
    assert not crashes, f"{path} logged errors: {crashes[:3]}"


async def test_the_server_is_healthy_after_the_fuzzing(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = target.backend
    for service in (OVERALL, FRUIT_SERVICE, PREDICTION_SERVICE, MONITORING_SERVICE, AUTH_SERVICE):
        await backend.wait_for_status(service, "SERVING", timeout_s=30)
    answer = await backend.predictions.Predict(target.predict, timeout=10)
    assert answer.label in target.classes
    assert abs(sum(answer.probabilities.values()) - 1) < 1e-9
    with capsys.disabled():
        print(f"\n{table(target.log)}")


def _gone(record: logging.LogRecord) -> bool:
    """grpc's own error when it cannot send a status because the call has ended already: the client's
    deadline passed while the handler ran (grpc logs it since grpc/grpc#32551). The client has its
    DEADLINE_EXCEEDED; nothing crashed."""
    return record.name.startswith("grpc.") and record.getMessage().startswith(
        "ExecuteBatchError raised in core"
    )


def table(log: dict[str, MethodLog]) -> str:
    """One line per method fuzzed: examples sent, seconds, statuses seen (most common first)."""
    lines = [f"{'method':<50} {'examples':>8} {'seconds':>7}  statuses"]
    for path, entry in log.items():
        seen = ", ".join(f"{name} {n}" for name, n in entry.statuses.most_common())
        lines.append(f"{path.lstrip('/'):<50} {entry.examples:>8} {entry.seconds:>7.1f}  {seen}")
    total = sum(e.examples for e in log.values())
    lines.append(f"{'total':<50} {total:>8} {sum(e.seconds for e in log.values()):>7.1f}")
    return "\n".join(lines)
