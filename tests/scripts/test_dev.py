"""The `nox -s dev` launcher's process handling, with stand-in processes (never the default ports)."""

from __future__ import annotations

import sys
import time

import pytest

from scripts.dev import ProcessSpec, Stack
from scripts.processes import wait_until

SLEEP = "import time; time.sleep(60)"
# Says goodbye on SIGTERM, so the test can see that stop() sent it and waited.
POLITE = (
    "import signal, sys, time\n"
    "def bye(*_):\n"
    "    print('got SIGTERM', flush=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "print('hello', flush=True)\n"
    "time.sleep(60)\n"
)


def python(name: str, code: str, **kwargs: object) -> ProcessSpec:
    return ProcessSpec(name=name, args=[sys.executable, "-c", code], **kwargs)  # type: ignore[arg-type]


def test_output_is_prefixed_and_stop_ends_every_process_newest_first(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = Stack([python("first", POLITE), python("second", POLITE, ready=lambda: True)])
    seen: list[str] = []

    def greeted() -> bool:
        seen.append(capsys.readouterr().out)
        return "".join(seen).count("| hello") == 2

    try:
        stack.start()
        wait_until(greeted, timeout=30, what="both greetings")
    finally:
        stack.stop()
    seen.append(capsys.readouterr().out)
    lines = [line.strip() for line in "".join(seen).splitlines()]
    assert {"first | hello", "second | hello"} <= set(lines)
    assert lines.index("second | stopping") < lines.index("first | stopping")
    assert lines.index("second | got SIGTERM") < lines.index("first | got SIGTERM")
    assert [proc.returncode for _, proc in stack.running] == [0, 0]


def test_a_process_that_exits_stops_the_stack() -> None:
    stack = Stack([python("sleeper", SLEEP), python("quitter", "import sys; sys.exit(3)")])
    try:
        stack.start()
        started = time.monotonic()
        assert stack.wait() == 1
        assert time.monotonic() - started < 10
    finally:
        stack.stop()
    assert [proc.returncode for _, proc in stack.running][1] == 3
    assert all(proc.returncode is not None for _, proc in stack.running)


def test_a_process_that_dies_while_starting_is_reported() -> None:
    stack = Stack([python("broken", "import sys; sys.exit(2)", ready=lambda: False)])
    try:
        with pytest.raises(SystemExit, match="broken exited with status 2 while starting"):
            stack.start()
    finally:
        stack.stop()


def test_the_backend_gets_the_first_admin_from_the_environment_or_the_local_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from backend.config import PLACEHOLDER_ADMIN_PASSWORD
    from scripts.dev import process_specs

    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:1")  # no nx-27017 spec, no data folder
    monkeypatch.delenv("FIRST_ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("FIRST_ADMIN_PASSWORD", raising=False)
    backend = next(s for s in process_specs() if s.name == "backend")
    assert (backend.env["FIRST_ADMIN_USERNAME"], backend.env["FIRST_ADMIN_PASSWORD"]) == (
        "admin",
        PLACEHOLDER_ADMIN_PASSWORD,
    )
    assert backend.env["LOCAL_MODE"] == "true"

    monkeypatch.setenv("FIRST_ADMIN_USERNAME", "root")
    monkeypatch.setenv("FIRST_ADMIN_PASSWORD", "my-own-password")
    backend = next(s for s in process_specs() if s.name == "backend")
    assert (backend.env["FIRST_ADMIN_USERNAME"], backend.env["FIRST_ADMIN_PASSWORD"]) == (
        "root",
        "my-own-password",
    )
