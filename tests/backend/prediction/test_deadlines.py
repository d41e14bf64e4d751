"""The caller's deadline bounds the backend's call to the model service (a model service that hangs)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from grpc import aio

from tests.fixtures.backend import backend_in_front_of, backend_settings, running_backend


class SilentServer:
    """An HTTP server that says it is ready (GET /readyz) but never answers a call.

    It records how long each unanswered connection stayed open. (A service whose readiness probe
    hangs too is known to be down, and calls to it fail fast instead: see test_outages.py.)
    """

    def __init__(self) -> None:
        self.url = ""
        self.open_for: list[float] = []
        self.closed = asyncio.Event()


@pytest.fixture
async def silent_model_service() -> AsyncIterator[SilentServer]:
    silent = SilentServer()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        began = time.monotonic()
        first = await reader.read(65536)
        if first.startswith(b"GET /readyz"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        while await reader.read(65536):  # until the client gives up and closes
            pass
        if first.startswith(b"POST /model"):  # not the health probe's GET /readyz
            silent.open_for.append(time.monotonic() - began)
            silent.closed.set()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent.url = f"http://127.0.0.1:{port}"
    try:
        yield silent
    finally:
        server.close()


async def test_the_callers_deadline_bounds_the_model_call(
    silent_model_service: SilentServer, mongodb_uri: str, mongodb_database: str
) -> None:
    silent = silent_model_service
    settings = backend_settings(
        mongodb_uri=mongodb_uri, mongodb_database=mongodb_database, model_url=silent.url
    )
    assert settings.model_timeout_s == 2.0
    async with running_backend(settings) as backend:
        stub = predictions_pb2_grpc.PredictionServiceStub(backend.channel)
        # No deadline from the client: the backend's own bound applies and says what happened.
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetModel(predictions_pb2.GetModelRequest())
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "did not answer" in (caught.value.details() or "")

        # A 0.5 s deadline: the backend gives up its model call then, not after its own 2 s.
        await asyncio.wait_for(silent.closed.wait(), 5)
        silent.open_for.clear()
        silent.closed.clear()
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetModel(predictions_pb2.GetModelRequest(), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.wait_for(silent.closed.wait(), 5)
        assert silent.open_for[0] < 1.5, "the model call outlived the caller's deadline"


@pytest.fixture
def unreachable_model_url() -> Iterator[str]:
    """A port whose accept queue is full: connections neither succeed nor get refused (like a gone host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the accept queue; later SYNs are dropped, so connect() just waits
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_model_service_that_accepts_no_connection_is_unavailable_fast(
    unreachable_model_url: str, mongodb_uri: str, mongodb_database: str
) -> None:
    async with backend_in_front_of(unreachable_model_url, mongodb_uri, mongodb_database) as backend:
        stub = predictions_pb2_grpc.PredictionServiceStub(backend.channel)
        began = time.monotonic()
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetModel(predictions_pb2.GetModelRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "accepted no connection" in (caught.value.details() or "")
        assert time.monotonic() - began < 5
