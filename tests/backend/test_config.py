"""Unit tests of the settings object: defaults and the refusal of placeholder secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from backend.config import PLACEHOLDER_PAGE_TOKEN_SECRET, Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_in_local_mode() -> None:
    settings = Settings(_env_file=None, local_mode=True)  # type: ignore[call-arg]
    assert settings.grpc_port == 50051
    assert settings.mongodb_database == "fruitstack"
    assert settings.model_url == "http://localhost:3000"


@pytest.mark.parametrize("unset", [None, "", "   "])
def test_unset_secret_becomes_a_random_key_per_process(
    monkeypatch: pytest.MonkeyPatch, unset: str | None
) -> None:
    if unset is not None:
        monkeypatch.setenv("PAGE_TOKEN_SECRET", unset)
    first, second = (Settings(_env_file=None).page_token_secret.get_secret_value() for _ in range(2))  # type: ignore[call-arg]
    assert len(first) >= 32
    assert first != second


def test_placeholder_secret_is_refused_outside_local_mode() -> None:
    with pytest.raises(ValidationError, match="PAGE_TOKEN_SECRET is the placeholder"):
        Settings(_env_file=None, page_token_secret=SecretStr(PLACEHOLDER_PAGE_TOKEN_SECRET))  # type: ignore[call-arg]


def test_placeholder_secret_is_allowed_in_local_mode() -> None:
    settings = Settings(
        _env_file=None, local_mode=True, page_token_secret=SecretStr(PLACEHOLDER_PAGE_TOKEN_SECRET)
    )  # type: ignore[call-arg]
    assert settings.page_token_secret.get_secret_value() == PLACEHOLDER_PAGE_TOKEN_SECRET


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(_env_file=None, page_token_secret=SecretStr("short"))  # type: ignore[call-arg]


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_PORT", "6000")
    monkeypatch.setenv("PAGE_TOKEN_SECRET", "a-real-secret-of-enough-length")
    monkeypatch.setenv("MONGODB_DATABASE", "other")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.grpc_port, settings.mongodb_database) == (6000, "other")
