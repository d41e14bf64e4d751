"""The `nox -s dev` launcher's process handling, with stand-in processes (never the default ports)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

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


def _bind_address(spec: ProcessSpec) -> str:
    """Where the process listens, read from its command line or environment as the tool reads it."""
    args = list(spec.args)
    if "--host" in args:
        return args[args.index("--host") + 1]
    host_variable = {"backend": "GRPC_HOST", "frontend": "HOST"}[spec.name]
    return spec.env[host_variable]


def test_every_process_of_the_local_stack_listens_on_loopback_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import scripts.dev
    from backend.config import Settings, is_loopback

    # The launcher makes its data folders: here in tmp_path. No variable of the developer's leaks in.
    monkeypatch.setattr(scripts.dev, "DATA_DIR", tmp_path)
    for name in ("MONGODB_URI", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "GRPC_HOST", "HOST"):
        monkeypatch.delenv(name, raising=False)
    specs = {spec.name: spec for spec in scripts.dev.process_specs()}
    listening = {name for name, spec in specs.items() if spec.ports}
    # A new listening process must say here where it listens.
    assert listening == {"mongo", "mlflow", "prefect", "model", "backend", "frontend"}
    for name in listening:
        assert _bind_address(specs[name]) == "127.0.0.1", name
    # The runner serves nothing unless told to; then on loopback too.
    assert specs["retrain"].env["PREFECT_RUNNER_SERVER_HOST"] == "127.0.0.1"
    # And the backend, started with exactly this environment, accepts it (it refuses LOCAL_MODE on
    # any other address).
    backend_env = specs["backend"].env
    for name, value in backend_env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.local_mode
    assert is_loopback(settings.grpc_host)


# A launcher in a process of its own, so the test can SIGKILL it: one child through the dev
# launcher's Stack, one through the ManagedProcess the tests and benchmarks use; both serve HTTP.
LAUNCHER = """
import sys, time
from pathlib import Path
from scripts.dev import ProcessSpec, Stack
from scripts.processes import ManagedProcess
stack_port, managed_port, log_dir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
serve = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
Stack([ProcessSpec(name="web", args=[*serve, str(stack_port)])]).start()
ManagedProcess("managed", [*serve, str(managed_port)], log_dir=log_dir).start()
print("started", flush=True)
time.sleep(600)
"""


def test_children_stop_when_their_launcher_is_killed_outright(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess

    import psutil

    from scripts.processes import ROOT, free_port, port_open

    ports = [free_port(), free_port()]
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *map(str, ports), str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert launcher.stdout is not None
        for line in launcher.stdout:  # the Stack prints its own lines first
            if line.strip() == b"started":
                break
        wait_until(lambda: all(port_open(p) for p in ports), timeout=30, what="both children to serve")
        children = psutil.Process(launcher.pid).children()
        assert len(children) == 2

        launcher.send_signal(signal.SIGKILL)  # no handler, no finally: only the kernel can act
        launcher.wait(timeout=10)

        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == []
        assert not any(port_open(p) for p in ports)
    finally:
        if launcher.poll() is None:
            launcher.kill()
