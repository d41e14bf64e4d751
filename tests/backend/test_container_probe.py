"""`python -m backend.container_probe`, the container probe, against a real backend on a free port."""

from __future__ import annotations

import asyncio
import os
import sys

from backend.container_probe import check
from scripts.processes import ROOT, free_port
from tests.fixtures.backend import TEST_PAGE_TOKEN_SECRET, RunningBackend


async def run_probe(port: int) -> tuple[int, str]:
    # The probe builds the backend's Settings, so it needs what the server needs (env wins over .env).
    env = {**os.environ, "GRPC_PORT": str(port), "PAGE_TOKEN_SECRET": TEST_PAGE_TOKEN_SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.container_probe", "--timeout", "2",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return await proc.wait(), out.decode()


async def test_check_reads_the_servers_own_health(backend: RunningBackend) -> None:
    # The probe is a blocking client; the server shares this event loop, so it runs in a thread.
    assert await asyncio.to_thread(check, backend.target) == "SERVING"
    assert await asyncio.to_thread(check, backend.target, service="fruitstack.v1.FruitService") == "SERVING"


async def test_check_reports_why_when_nothing_answers() -> None:
    status = await asyncio.to_thread(check, f"127.0.0.1:{free_port()}", timeout_s=1)

    assert status.startswith("UNAVAILABLE")


async def test_probe_exits_zero_only_when_serving(backend: RunningBackend) -> None:
    healthy = await run_probe(backend.port)
    nobody = await run_probe(free_port())

    assert healthy == (0, "health('') = SERVING\n")
    assert nobody[0] == 1
    assert "UNAVAILABLE" in nobody[1]
