"""Processes and ports for the development tools: `nox -s dev`, the tests and the benchmarks share these.

No pytest in here: the benchmarks and the launcher import it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
from pymongo import MongoClient
from pymongo.errors import PyMongoError

if TYPE_CHECKING:
    from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parent.parent


# Linux's prctl(PR_SET_PDEATHSIG): the kernel signals a process when its parent dies, however the
# parent dies (SIGKILL included), which no cleanup code in the parent can promise.
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


# Looked up once, before any fork: the child between fork and exec should do as little as possible.
_PRCTL = _load_prctl()


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Have the kernel send sig to this process when its parent exits (Linux only; else nothing).

    If the parent died while the call was made, sig is sent now.
    """
    if _PRCTL is None:
        return
    parent = os.getppid()
    _PRCTL(_PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


def child_dies_with_us() -> Callable[[], None] | None:
    """A Popen `preexec_fn` giving the child SIGTERM when this process dies, or None where it cannot.

    The kernel ties the signal to the *thread* that forked: a child started from a worker thread
    would be stopped when that thread ends. So only children started from the main thread get it.
    """
    if _PRCTL is None or threading.current_thread() is not threading.main_thread():
        return None
    prctl, parent, sigterm = _PRCTL, os.getpid(), int(signal.SIGTERM)

    def setup() -> None:  # runs in the child between fork and exec: nothing that allocates or locks
        prctl(_PR_SET_PDEATHSIG, sigterm)
        if os.getppid() != parent:  # the parent died before the line above: do not start at all
            os._exit(1)

    return setup


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tool_path(name: str) -> str | None:
    """A console script of this Python's environment (beside the interpreter), else from PATH."""
    beside_python = Path(sys.executable).with_name(name)
    return str(beside_python) if beside_python.exists() else shutil.which(name)


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
        # A new session so that stop() also reaches the workers a server forks; SIGTERM when this
        # process dies, so a test run or benchmark killed outright leaves no server on its port.
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child_dies_with_us(),  # fork-safe: see child_dies_with_us
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

    def pause(self) -> None:
        """Freeze the process and its workers (SIGSTOP): connections stay open, nothing answers."""
        self._signal_tree(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_tree(signal.SIGCONT)

    def _signal_tree(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        for process in [psutil.Process(self.proc.pid), *_descendants(self.proc.pid)]:
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return children


def nx_27017_args(
    executable: str, *, db_dir: Path, log_file: Path, port: int, host: str = "127.0.0.1"
) -> list[str]:
    """The command line of an nx-27017 server with its SQLite files in db_dir (pid file beside the log)."""
    return [
        executable,
        "--data-dir", str(db_dir),
        "--host", host,
        "-p", str(port),
        "--log-file", str(log_file),
        "--pid-file", str(log_file.with_suffix(".pid")),
    ]  # fmt: skip


def mongo_answers(uri: str) -> bool:
    try:
        client: MongoClient[dict[str, object]] = MongoClient(
            uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500
        )
        with client:
            client.admin.command("ping")
        return True
    except PyMongoError:
        return False


class NxServer:
    """A local nx-27017 whose data lives in data_dir, so it can be stopped and started again."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        executable = tool_path("nx-27017")
        if executable is None:
            raise FileNotFoundError("nx-27017 is not installed (pip install -r requirements-dev.txt)")
        args = nx_27017_args(
            executable, db_dir=data_dir / "db", log_file=data_dir / "nx-27017.server.log", port=self.port
        )
        self.process = ManagedProcess("nx-27017", args, log_dir=data_dir)

    @property
    def running(self) -> bool:
        return self.process.running

    def start(self) -> NxServer:
        self.process.start()
        self.process.wait_ready(lambda: mongo_answers(self.uri), timeout=60)
        return self

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is answered."""
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def stop(self) -> None:
        """Stop it and wait for the process to exit (it checkpoints its SQLite files on SIGTERM)."""
        self.process.stop()


# MLflow must never phone home; its job runner serves GenAI features we do not use, and with it off
# the server needs half the memory (~1.2 GB -> ~0.5 GB measured).
MLFLOW_SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_server_args(executable: str, data_dir: Path, *, port: int, host: str = "127.0.0.1") -> list[str]:
    """An `mlflow server` with a SQLite backend store and its artifacts served through it, in data_dir."""
    return [
        executable, "server",
        "--host", host,
        "--port", str(port),
        "--backend-store-uri", f"sqlite:///{data_dir / 'mlflow.db'}",
        "--artifacts-destination", str(data_dir / "artifacts"),
        "--serve-artifacts",
        # One worker is plenty here and keeps the server at ~0.5 GB.
        "--workers", "1",
    ]  # fmt: skip


def mlflow_api_ok(url: str) -> bool:
    """A real API call: /health answers before (and regardless of) the API."""
    return http_ok(f"{url}/api/2.0/mlflow/experiments/search?max_results=1")


class MlflowServer:
    """One `mlflow server` child process on a free port with its own data folder."""

    # The first start creates the SQLite schema (alembic migrations): ~20 s on a busy 2-core machine.
    START_TIMEOUT = 180.0

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        executable = tool_path("mlflow")
        if executable is None:
            raise FileNotFoundError("mlflow is not installed (pip install -r registry/requirements.txt)")
        self.process = ManagedProcess(
            f"mlflow-{self.port}",
            mlflow_server_args(executable, data_dir, port=self.port),
            log_dir=data_dir,
            env=MLFLOW_SERVER_ENV,
        )

    def ready(self) -> bool:
        return mlflow_api_ok(self.url)

    def start(self) -> MlflowServer:
        self.process.start()
        self.process.wait_ready(self.ready, timeout=self.START_TIMEOUT)
        return self

    def stop(self) -> None:
        self.process.stop()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    def client(self) -> MlflowClient:
        """An MlflowClient on this server (mlflow imported here, only by whoever asks)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)


# Prefect's server: no telemetry; the UI in a browser on the host calls the API at ui_api_url.
def prefect_server_env(prefect_home: Path, *, ui_api_url: str) -> dict[str, str]:
    return {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": ui_api_url,
    }


def prefect_server_args(executable: str, *, port: int, host: str = "127.0.0.1") -> list[str]:
    """`prefect server start`: UI and API on one port, SQLite under $PREFECT_HOME."""
    return [executable, "server", "start", "--host", host, "--port", str(port), "--analytics-off"]


def prefect_api_ok(api_url: str) -> bool:
    """/api/health answers `true` once the server (and its database) is up."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200 and response.read().strip() == b"true")
    except OSError:
        return False


class PrefectServer:
    """One `prefect server start` child process on a free port with its own PREFECT_HOME."""

    # ~25-35 s to ready on this 2-core machine (migrations and the UI build on first start).
    START_TIMEOUT = 180.0

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        executable = tool_path("prefect")
        if executable is None:
            raise FileNotFoundError("prefect is not installed (pip install -r pipelines/requirements.txt)")
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            f"prefect-{self.port}",
            prefect_server_args(executable, port=self.port),
            log_dir=data_dir,
            env=prefect_server_env(data_dir / "home", ui_api_url=self.api_url),
        )

    def start(self) -> PrefectServer:
        self.process.start()
        self.process.wait_ready(lambda: prefect_api_ok(self.api_url), timeout=self.START_TIMEOUT)
        return self

    def stop(self) -> None:
        self.process.stop()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)
