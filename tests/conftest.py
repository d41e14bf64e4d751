"""Shared fixtures: each real server the tests need lives in its own module under tests/fixtures/."""

from __future__ import annotations

pytest_plugins: list[str] = [
    "tests.fixtures.mongo",
    "tests.fixtures.backend",
    "tests.fixtures.model_service",
    "tests.fixtures.frontend",
    "tests.fixtures.stack",
]
