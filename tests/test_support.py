"""A missing browser, Docker engine or tool skips a test locally but fails it under CI."""

from __future__ import annotations

import pytest

from tests.support import skip_or_fail, venv_tool


@pytest.mark.parametrize("ci", ["", "false"])
def test_outside_ci_a_missing_tool_skips(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="no engine"):
        skip_or_fail("no engine")


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_under_ci_a_missing_tool_fails(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"no engine.*CI=true"):
        skip_or_fail("no engine")


def test_a_missing_console_script_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool is not installed"):
        venv_tool("no-such-tool", install_hint="nothing to install")
