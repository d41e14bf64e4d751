"""Closing the backend is bounded step by step: a step that hangs is abandoned, named, and the rest runs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from backend import server


async def test_a_step_that_hangs_is_abandoned_with_a_warning_and_the_next_one_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server, "CLOSE_STEP_S", 0.05)
    ran: list[str] = []

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def closes() -> None:
        ran.append("closed")

    with caplog.at_level(logging.WARNING, logger="backend.server"):
        await server.close_within("write the pages", hangs())
        await server.close_within("close the client", closes())

    assert ran == ["closed"]
    assert [r.getMessage() for r in caplog.records] == [
        "shutdown: could not write the pages within 0s; going on without it"
    ]
