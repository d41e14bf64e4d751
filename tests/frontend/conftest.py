"""Browser test settings: a laptop-sized page, patient timeouts, screenshots kept as artifacts.

The browser itself (Debian's Chromium) is set up in tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from scripts.processes import ROOT

# Git-ignored; CI can keep it as a build artifact.
SCREENSHOT_DIR = ROOT / ".artifacts" / "screenshots"
# A busy 2-core machine runs a backend, a model service and a browser at once: be patient.
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    # A laptop screen; downloads are needed by the bulk-scoring test.
    return {**browser_context_args, "viewport": {"width": 1400, "height": 900}, "accept_downloads": True}


@pytest.fixture
def app_page(page: Page) -> Page:
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return page


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
