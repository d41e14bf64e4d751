"""ModelClient against a real HTTP server on a socket that misbehaves the way servers really do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from backend.exceptions import Unavailable
from backend.prediction import ModelClient

MODEL = {"name": "m", "version": "v1", "features": [], "classes": []}


class OneAnswerPerConnection:
    """An HTTP/1.1 server that promises keep-alive, answers the first request on each connection,
    then closes the connection on the next request without answering: what a client sees when the
    server's idle timeout or a restart closes a pooled connection just as it is reused."""

    def __init__(self) -> None:
        self.connections = 0
        self.answered = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        for request in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
            length = int({k.lower(): v for k, v in headers.items()}[b"content-length"])
            await reader.readexactly(length)
            if request == 1:
                break  # the reused connection: close it unanswered
            body = orjson.dumps(MODEL)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            self.answered += 1
        writer.close()


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[OneAnswerPerConnection, str]]:
    server = OneAnswerPerConnection()
    url = await server.start()
    yield server, url
    await server.stop()


async def test_a_pooled_connection_closed_on_reuse_is_retried_once_on_a_new_one(
    flaky_server: tuple[OneAnswerPerConnection, str],
) -> None:
    server, url = flaky_server
    client = ModelClient(url, default_timeout=5)
    try:
        for _ in range(3):
            assert (await client.model())["version"] == "v1"
    finally:
        await client.close()
    # Calls 2 and 3 each met a connection closed on reuse and succeeded on a fresh one.
    assert server.answered == 3
    assert server.connections == 3


async def test_a_server_that_keeps_dropping_the_call_is_unavailable(unused_tcp_port: int) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", unused_tcp_port)
    client = ModelClient(f"http://127.0.0.1:{unused_tcp_port}", default_timeout=5)
    try:
        with pytest.raises(Unavailable, match="is unreachable"):
            await client.model()
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
