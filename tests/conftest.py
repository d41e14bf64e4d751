"""Shared fixtures: each real server the tests need lives in its own module under tests/fixtures/."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop
from grpc.experimental.aio import init_grpc_aio  # type: ignore[import-not-found]  # grpc-stubs lacks it

from tests.support import skip_or_fail

# Hold one reference to grpc's asyncio machinery for the whole session, from the main thread: the
# tests create and drop many aio servers and channels on several event loops, and grpc tears its
# poller down when the last one goes, which can deadlock the process in a garbage collection at the
# end of the session (grpc/grpc#22365; the maintainers' advice is this early init_grpc_aio()).
init_grpc_aio()

pytest_plugins: list[str] = [
    "tests.fixtures.mongo",
    "tests.fixtures.backend",
    "tests.fixtures.mlflow",
    "tests.fixtures.model_service",
    "tests.fixtures.frontend",
    "tests.fixtures.stack",
    "tests.fixtures.prefect",
]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    """Async tests and fixtures run on uvloop, the event loop `python -m backend` runs on."""
    return {"uvloop": uvloop.new_event_loop}


# Debian's Chromium: this machine can download no browser, so `playwright install` is never used.
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options, pointed at Debian's Chromium, headless and offline."""
    if shutil.which(CHROMIUM) is None:
        skip_or_fail(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser and whole-stack tests last (otherwise in collection order).

    Playwright's sync API keeps an event loop running in the main thread from its first use to the
    end of the session, and pytest-asyncio cannot run an async test or fixture under it. Whole-stack
    tests move as one block so that their module-scoped stack is built once.
    """

    def order(item: pytest.Item) -> tuple[bool, bool]:
        docker = item.get_closest_marker("docker") is not None
        return (docker or item.get_closest_marker("browser") is not None, docker)

    items.sort(key=order)
