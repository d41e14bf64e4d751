"""The compose stack's generated secrets: created once, strong, never overwritten, read by Settings."""

from __future__ import annotations

import stat
from pathlib import Path

from backend.auth.secret_files import SECRETS, ensure_secret_files
from backend.config import Settings


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
