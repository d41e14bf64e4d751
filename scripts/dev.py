"""`nox -s dev`: run the whole stack locally on the default ports, logs prefixed; Ctrl-C stops it all.

Each part of the stack is one ProcessSpec in `process_specs()`. To add a process, append a spec
there (in start order); a spec's `ready` check is awaited before the next process starts, and a
`prepare` step (e.g. training a model first) runs before the process itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from backend.config import PLACEHOLDER_ADMIN_PASSWORD, PLACEHOLDER_RETRAINER_PASSWORD
from scripts.processes import (
    MLFLOW_SERVER_ENV,
    ROOT,
    child_dies_with_us,
    die_with_parent,
    http_ok,
    mlflow_api_ok,
    mlflow_server_args,
    nx_27017_args,
    port_open,
    prefect_api_ok,
    prefect_server_args,
    prefect_server_env,
)

DATA_DIR = ROOT / ".data"
BIN = Path(sys.executable).parent

# Every process of the local stack listens on loopback only: local mode runs with well-known
# secrets and the documented admin password, and nothing here speaks TLS.
LOOPBACK = "127.0.0.1"

MONGODB_PORT = 27017
GRPC_PORT = int(os.environ.get("GRPC_PORT", "50051"))
MODEL_PORT = 3000
MLFLOW_PORT = 5000
PREFECT_PORT = 4200
FRONTEND_PORT = int(os.environ.get("PORT", "8080"))

COLORS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m"]
RESET = "\033[0m"


@dataclass
class ProcessSpec:
    """One long-running process of the stack."""

    name: str
    args: Sequence[str]
    # Ports it listens on: checked to be free before anything starts.
    ports: Sequence[int] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    # Returns True once the process serves; None: do not wait.
    ready: Callable[[], bool] | None = None
    ready_timeout_s: float = 120
    # Runs (to completion, output prefixed) before the process starts, e.g. training a model.
    prepare: Sequence[str] | None = None
    # Output lines for which this returns True are not shown (they may still be in a log file).
    hide: Callable[[str], bool] | None = None


def process_specs() -> list[ProcessSpec]:
    """The stack, in start order. Model service and frontend engineers: add your specs below."""
    specs: list[ProcessSpec] = []
    env: dict[str, str] = {"LOCAL_MODE": os.environ.get("LOCAL_MODE", "true")}

    mongodb_uri = os.environ.get("MONGODB_URI")
    if not mongodb_uri:
        mongo_dir = DATA_DIR / "mongo"
        mongo_dir.mkdir(parents=True, exist_ok=True)
        mongodb_uri = f"mongodb://127.0.0.1:{MONGODB_PORT}"
        specs.append(
            ProcessSpec(
                name="mongo",
                args=nx_27017_args(
                    str(BIN / "nx-27017"),
                    db_dir=mongo_dir,
                    log_file=mongo_dir / "nx-27017.log",
                    port=MONGODB_PORT,
                    host=LOOPBACK,
                ),
                ports=[MONGODB_PORT],
                ready=lambda: port_open(MONGODB_PORT),
                # nx-27017 logs every command (each health ping) at INFO; its log file keeps them.
                hide=lambda line: " - INFO - " in line,
            )
        )
    env["MONGODB_URI"] = mongodb_uri

    # ---- MLflow tracking server and model registry (:5000) ----
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        mlflow_dir = DATA_DIR / "mlflow"
        mlflow_dir.mkdir(parents=True, exist_ok=True)
        tracking_uri = f"http://127.0.0.1:{MLFLOW_PORT}"
        specs.append(
            ProcessSpec(
                name="mlflow",
                args=mlflow_server_args(str(BIN / "mlflow"), mlflow_dir, port=MLFLOW_PORT, host=LOOPBACK),
                ports=[MLFLOW_PORT],
                env=MLFLOW_SERVER_ENV,
                # The first start creates the database, which takes a while.
                ready=lambda: mlflow_api_ok(tracking_uri),
                ready_timeout_s=180,
                # One access-log line per request, and the model service polls every few seconds.
                hide=lambda line: '" 200' in line and "INFO:" in line,
            )
        )

    # ---- Prefect server (UI and API, :4200), for retraining ----
    # The one place where the runner, its flow runs and the backend learn where Prefect is.
    prefect_api_url = os.environ.get("PREFECT_API_URL")
    if not prefect_api_url:
        prefect_dir = DATA_DIR / "prefect"
        prefect_dir.mkdir(parents=True, exist_ok=True)
        prefect_api_url = f"http://127.0.0.1:{PREFECT_PORT}/api"
        specs.append(
            ProcessSpec(
                name="prefect",
                args=prefect_server_args(str(BIN / "prefect"), port=PREFECT_PORT, host=LOOPBACK),
                ports=[PREFECT_PORT],
                env=prefect_server_env(prefect_dir, ui_api_url=f"http://localhost:{PREFECT_PORT}/api"),
                ready=lambda: prefect_api_ok(prefect_api_url),
                ready_timeout_s=180,
            )
        )
    env["PREFECT_API_URL"] = prefect_api_url

    # ---- model service (BentoML, :3000) ----
    bento_env = {
        "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(ROOT / ".bentoml")),
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    specs.append(
        ProcessSpec(
            name="model",
            args=[sys.executable, "-m", "bentoml", "serve", "--host", LOOPBACK, "--port", str(MODEL_PORT)],
            ports=[MODEL_PORT],
            env=bento_env,
            cwd=ROOT / "bento",
            ready=lambda: http_ok(f"http://127.0.0.1:{MODEL_PORT}/readyz"),
            # An empty registry gets a first champion (iris, seed 42); otherwise this returns at once.
            prepare=[sys.executable, "train.py", "--quiet", "--if-no-champion"],
        )
    )
    env["MODEL_URL"] = f"http://127.0.0.1:{MODEL_PORT}"

    # The first admin, from the environment, else the documented local default (refused by the
    # backend outside LOCAL_MODE). It is created only when no user of that name exists yet.
    env["FIRST_ADMIN_USERNAME"] = os.environ.get("FIRST_ADMIN_USERNAME", "admin")
    env["FIRST_ADMIN_PASSWORD"] = os.environ.get("FIRST_ADMIN_PASSWORD", PLACEHOLDER_ADMIN_PASSWORD)
    # The retraining runner's service account (role retrainer): the backend creates it, the runner
    # signs in as it; neither needs the other's secrets.
    retrainer = {
        "RETRAINER_USERNAME": os.environ.get("RETRAINER_USERNAME", "retrainer"),
        "RETRAINER_PASSWORD": os.environ.get("RETRAINER_PASSWORD", PLACEHOLDER_RETRAINER_PASSWORD),
    }
    env.update(retrainer)
    specs.append(
        ProcessSpec(
            name="backend",
            args=[sys.executable, "-m", "backend"],
            ports=[GRPC_PORT],
            # The backend refuses LOCAL_MODE on any other address (backend.config).
            env={**env, "GRPC_HOST": LOOPBACK, "GRPC_PORT": str(GRPC_PORT)},
            ready=lambda: port_open(GRPC_PORT),
        )
    )

    # ---- retraining runner: serves the deployment, runs its flows (python -m pipelines) ----
    specs.append(
        ProcessSpec(
            name="retrain",
            args=[sys.executable, "-m", "pipelines"],
            env={
                "PREFECT_API_URL": prefect_api_url,
                # bento/ is not a package: its training code is imported top-level, as in the image.
                "PYTHONPATH": str(ROOT / "bento"),
                "MONGODB_URI": mongodb_uri,
                "MLFLOW_TRACKING_URI": tracking_uri,
                "BACKEND_ADDRESS": f"127.0.0.1:{GRPC_PORT}",
                # It signs in as its service account to switch to the champion after a promotion.
                **retrainer,
                # Its web server is off unless PREFECT_RUNNER_SERVER_ENABLE is set; then on loopback.
                "PREFECT_RUNNER_SERVER_HOST": LOOPBACK,
                **{k: v for k, v in bento_env.items() if k != "MLFLOW_TRACKING_URI"},
            },
        )
    )

    # ---- frontend (Shiny, :8080) ----
    specs.append(
        ProcessSpec(
            name="frontend",
            args=[sys.executable, "-m", "frontend"],
            ports=[FRONTEND_PORT],
            env={"BACKEND_ADDRESS": f"127.0.0.1:{GRPC_PORT}", "HOST": LOOPBACK, "PORT": str(FRONTEND_PORT)},
            ready=lambda: http_ok(f"http://127.0.0.1:{FRONTEND_PORT}/"),
        )
    )

    return specs


class Stack:
    """Starts the specs in order, streams their output with a prefix and stops them in reverse."""

    def __init__(self, specs: list[ProcessSpec]) -> None:
        self.specs = specs
        self.width = max(len(s.name) for s in specs)
        self.running: list[tuple[ProcessSpec, subprocess.Popen[bytes]]] = []
        self.stopping = threading.Event()
        self._pumps: list[threading.Thread] = []
        self._print_lock = threading.Lock()

    def log(self, name: str, line: str) -> None:
        index = next((i for i, s in enumerate(self.specs) if s.name == name), -1)
        color = COLORS[index % len(COLORS)] if index >= 0 and sys.stdout.isatty() else ""
        with self._print_lock:
            print(f"{color}{name:>{self.width}} |{RESET if color else ''} {line}", flush=True)

    def _pump(self, spec: ProcessSpec, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if spec.hide is None or not spec.hide(line):
                self.log(spec.name, line)

    def _spawn(self, spec: ProcessSpec, args: Sequence[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(args),
            cwd=spec.cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **spec.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: Ctrl-C reaches only this launcher, which stops children in order.
            start_new_session=True,
            # And SIGTERM from the kernel if this launcher dies without stopping them (SIGKILL).
            preexec_fn=child_dies_with_us(),  # fork-safe: see child_dies_with_us
        )
        assert proc.stdout is not None
        pump = threading.Thread(target=self._pump, args=(spec, proc.stdout), daemon=True)
        pump.start()
        self._pumps.append(pump)
        return proc

    def check_ports(self) -> None:
        busy = [(s.name, p) for s in self.specs for p in s.ports if port_open(p)]
        if busy:
            details = ", ".join(f"{port} ({name})" for name, port in busy)
            raise SystemExit(f"dev: port(s) already in use: {details}. Is another `nox -s dev` running?")

    def start(self) -> None:
        for spec in self.specs:
            if self.stopping.is_set():
                return
            if spec.prepare:
                self.log(spec.name, f"preparing: {' '.join(spec.prepare)}")
                if self._spawn(spec, spec.prepare).wait() != 0:
                    raise SystemExit(f"dev: preparing {spec.name} failed")
            self.log(spec.name, f"starting: {' '.join(spec.args)}")
            proc = self._spawn(spec, spec.args)
            self.running.append((spec, proc))
            if spec.ready is not None:
                self._wait_ready(spec, proc)
        self.log(self.specs[-1].name, "everything is up; Ctrl-C stops the stack")

    def _wait_ready(self, spec: ProcessSpec, proc: subprocess.Popen[bytes]) -> None:
        assert spec.ready is not None
        deadline = time.monotonic() + spec.ready_timeout_s
        while not self.stopping.is_set():
            if proc.poll() is not None:
                raise SystemExit(f"dev: {spec.name} exited with status {proc.returncode} while starting")
            if spec.ready():
                self.log(spec.name, "ready")
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"dev: {spec.name} was not ready after {spec.ready_timeout_s:.0f}s")
            time.sleep(0.2)

    def wait(self) -> int:
        """Block until a stop is requested (0) or a process exits by itself (1)."""
        while not self.stopping.wait(0.5):
            for spec, proc in self.running:
                if proc.poll() is not None:
                    self.log(spec.name, f"exited with status {proc.returncode}; stopping the stack")
                    return 1
        return 0

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM each process group, newest first, waiting for each; SIGKILL after timeout_s."""
        for spec, proc in reversed(self.running):
            if proc.poll() is None:
                self.log(spec.name, "stopping")
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.log(spec.name, f"still running after {timeout_s:.0f}s; killing it")
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                except ProcessLookupError:
                    pass
            self.log(spec.name, f"stopped (status {proc.returncode})")
        # Let the last lines of output through before returning.
        for pump in self._pumps:
            pump.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    # `nox -s dev` killed outright: this launcher gets SIGTERM and stops the stack in order.
    die_with_parent()
    stack = Stack(process_specs())
    stack.check_ports()

    def request_stop(signum: int, _frame: object) -> None:
        stack.stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    status = 0
    try:
        stack.start()
        status = stack.wait()
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        status = 1
    finally:
        stack.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
