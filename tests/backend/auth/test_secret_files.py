"""The compose stack's generated secrets: created once, strong, never overwritten, read by Settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from backend.auth.secret_files import SECRETS, SERVICE_SECRETS, ensure_secret_files, main
from backend.config import PLACEHOLDER_RETRAINER_PASSWORD, Settings


def test_missing_secrets_are_created_and_existing_ones_kept(tmp_path: Path) -> None:
    (tmp_path / "first_admin_password").write_text("chosen-by-the-operator")

    created = ensure_secret_files(tmp_path)

    assert sorted(created) == ["auth_token_secret", "page_token_secret"]
    assert (tmp_path / "first_admin_password").read_text() == "chosen-by-the-operator"
    assert all(stat.S_IMODE((tmp_path / n).stat().st_mode) == 0o600 for n in created)
    before = {n: (tmp_path / n).read_text() for n in SECRETS}
    assert ensure_secret_files(tmp_path) == []
    assert {n: (tmp_path / n).read_text() for n in SECRETS} == before


def test_the_backend_settings_accept_what_is_generated(tmp_path: Path) -> None:
    ensure_secret_files(tmp_path)
    settings = Settings(_env_file=None, _secrets_dir=tmp_path)  # type: ignore[call-arg]

    assert settings.auth_token_secret.get_secret_value() == (tmp_path / "auth_token_secret").read_text()
    assert settings.page_token_secret.get_secret_value() == (tmp_path / "page_token_secret").read_text()
    assert len(settings.first_admin_password.get_secret_value()) >= 12
    assert not settings.local_mode


def test_the_runner_s_volume_holds_its_password_and_nothing_else(tmp_path: Path) -> None:
    """The backend reads both volumes; the retraining runner mounts only the service one."""
    backend_dir, service_dir = tmp_path / "backend", tmp_path / "service"
    assert main([str(backend_dir), str(service_dir)]) == 0

    assert sorted(p.name for p in service_dir.iterdir()) == sorted(SERVICE_SECRETS) == ["retrainer_password"]
    assert not set(SECRETS) & {p.name for p in service_dir.iterdir()}
    settings = Settings(_env_file=None, _secrets_dir=[backend_dir, service_dir])  # type: ignore[call-arg]
    password = (service_dir / "retrainer_password").read_text()
    assert settings.retrainer_password.get_secret_value() == password
    assert len(password) >= 12


def test_the_placeholder_retrainer_password_is_refused_outside_local_mode() -> None:
    with pytest.raises(ValidationError, match="RETRAINER_PASSWORD is the documented local default"):
        Settings(_env_file=None, retrainer_password=SecretStr(PLACEHOLDER_RETRAINER_PASSWORD))  # type: ignore[call-arg]
    local = Settings(
        _env_file=None,  # type: ignore[call-arg]
        retrainer_password=SecretStr(PLACEHOLDER_RETRAINER_PASSWORD),
        local_mode=True,
        grpc_host="127.0.0.1",
    )
    assert local.retrainer_password.get_secret_value() == PLACEHOLDER_RETRAINER_PASSWORD
