"""Unit tests of the settings object: defaults and the refusal of placeholder secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from backend.config import (
    PLACEHOLDER_ADMIN_PASSWORD,
    PLACEHOLDER_AUTH_TOKEN_SECRET,
    PLACEHOLDER_PAGE_TOKEN_SECRET,
    Settings,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_in_local_mode() -> None:
    settings = Settings(_env_file=None, local_mode=True, grpc_host="127.0.0.1")  # type: ignore[call-arg]
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
        _env_file=None,
        local_mode=True,
        grpc_host="127.0.0.1",
        page_token_secret=SecretStr(PLACEHOLDER_PAGE_TOKEN_SECRET),
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


def test_auth_token_secret_defaults_to_a_random_key_and_refuses_weak_ones() -> None:
    assert len(Settings(_env_file=None).auth_token_secret.get_secret_value()) >= 32  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="AUTH_TOKEN_SECRET must be at least 32 characters"):
        Settings(_env_file=None, auth_token_secret=SecretStr("too-short-for-hs256"))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="AUTH_TOKEN_SECRET is the placeholder"):
        Settings(_env_file=None, auth_token_secret=SecretStr(PLACEHOLDER_AUTH_TOKEN_SECRET))  # type: ignore[call-arg]
    local = Settings(
        _env_file=None,
        local_mode=True,
        grpc_host="127.0.0.1",
        auth_token_secret=SecretStr(PLACEHOLDER_AUTH_TOKEN_SECRET),
    )  # type: ignore[call-arg]
    assert local.auth_token_secret.get_secret_value() == PLACEHOLDER_AUTH_TOKEN_SECRET


def test_the_previous_token_key_is_optional_but_never_weak_or_the_placeholder() -> None:
    assert Settings(_env_file=None).auth_token_previous_secret.get_secret_value() == ""  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="AUTH_TOKEN_PREVIOUS_SECRET must be at least 32 characters"):
        Settings(_env_file=None, auth_token_previous_secret=SecretStr("too-short"))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="AUTH_TOKEN_PREVIOUS_SECRET is the placeholder"):
        Settings(_env_file=None, auth_token_previous_secret=SecretStr(PLACEHOLDER_AUTH_TOKEN_SECRET))  # type: ignore[call-arg]


def test_first_admin_password_is_optional_but_never_weak_or_the_local_default() -> None:
    assert Settings(_env_file=None).first_admin_password.get_secret_value() == ""  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="FIRST_ADMIN_PASSWORD must be at least 12 characters"):
        Settings(_env_file=None, first_admin_password=SecretStr("admin"))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="FIRST_ADMIN_PASSWORD is the documented local default"):
        Settings(_env_file=None, first_admin_password=SecretStr(PLACEHOLDER_ADMIN_PASSWORD))  # type: ignore[call-arg]
    assert (
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            local_mode=True,
            grpc_host="127.0.0.1",
            first_admin_password=SecretStr(PLACEHOLDER_ADMIN_PASSWORD),
        ).first_admin_password.get_secret_value()
        == PLACEHOLDER_ADMIN_PASSWORD
    )


def test_secrets_are_read_from_files_named_after_the_setting(tmp_path: Path) -> None:
    """Docker puts compose secrets in /run/secrets/<name>; the settings read them (env still wins)."""
    (tmp_path / "auth_token_secret").write_text("k" * 40 + "\n")
    (tmp_path / "first_admin_password").write_text("from-a-secret-file\n")
    settings = Settings(_env_file=None, _secrets_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.auth_token_secret.get_secret_value() == "k" * 40
    assert settings.first_admin_password.get_secret_value() == "from-a-secret-file"


def test_tls_needs_both_certificate_and_key(tmp_path: Path) -> None:
    cert = tmp_path / "server.pem"
    cert.write_text("x")
    with pytest.raises(ValidationError, match="set both TLS_CERT_FILE and TLS_KEY_FILE"):
        Settings(_env_file=None, tls_cert_file=cert)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="Path does not point to a file"):
        Settings(_env_file=None, tls_cert_file=tmp_path / "missing.pem", tls_key_file=cert)  # type: ignore[call-arg]
    assert Settings(_env_file=None, tls_cert_file=cert, tls_key_file=cert).tls  # type: ignore[call-arg]


@pytest.mark.parametrize("host", ["[::]", "0.0.0.0", "192.168.1.10", "backend"])
def test_local_mode_refuses_an_address_beyond_loopback(host: str) -> None:
    with pytest.raises(ValidationError, match=f"GRPC_HOST is '{re.escape(host)}': set GRPC_HOST=127.0.0.1"):
        Settings(_env_file=None, local_mode=True, grpc_host=host)  # type: ignore[call-arg]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "[::1]", "::1", "localhost"])
def test_local_mode_listens_on_loopback(host: str) -> None:
    assert Settings(_env_file=None, local_mode=True, grpc_host=host).grpc_host == host  # type: ignore[call-arg]


def test_outside_local_mode_the_default_address_is_every_interface() -> None:
    # Containers: the backend must be reachable from the frontend's and the runner's containers.
    assert Settings(_env_file=None).grpc_host == "[::]"  # type: ignore[call-arg]
