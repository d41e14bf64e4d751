"""The stack the soak loads: every server a process of its own on free ports, as `nox -s dev` runs it.

MLflow with a freshly trained champion, `bentoml serve` of it (polling the champion alias, as in
production), nx-27017 and `python -m backend` in local mode with a first admin, whom the workload
signs in as. Nothing is shared with a developer's stack: temporary folders and free ports only.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from backend import container_probe
from bench.predict_bench import model_service_process, nx_server, registry_server, running, train
from scripts.processes import ManagedProcess, MlflowServer, free_port, http_ok

# SERVING for each means: MongoDB answers, the model service is ready, the first admin exists.
SERVICES = (
    "fruitstack.v1.FruitService",
    "fruitstack.v1.PredictionService",
    "fruitstack.v1.MonitoringService",
    "fruitstack.v1.AuthService",
)
ADMIN = "soak-admin"


@dataclass(frozen=True)
class SoakStack:
    target: str  # the backend's gRPC address
    login: tuple[str, str]  # the first admin's username and password
    # The processes whose memory and CPU the soak watches, by the name its report gives them.
    processes: dict[str, ManagedProcess]


def serving(target: str) -> bool:
    return all(container_probe.check(target, service=s, timeout_s=1) == "SERVING" for s in SERVICES)


@contextlib.contextmanager
def soak_stack(tmp: Path, console: Console) -> Iterator[SoakStack]:
    """Start the stack in tmp (its data and logs); stop every process on the way out."""
    with contextlib.ExitStack() as stack:
        console.log("starting MLflow and registering a freshly trained champion in it")
        (tmp / "mlflow").mkdir()
        registry = stack.enter_context(registry_server(MlflowServer(tmp / "mlflow")))
        home = tmp / "bentoml"
        train(home, tmp / "model.pkl", registry.url)
        console.log("starting nx-27017, the model service and the backend")
        mongo = stack.enter_context(nx_server(tmp / "nx-27017"))
        model_port = free_port()
        model_service = model_service_process(
            home, registry.url, port=model_port, log_dir=tmp, poll_interval_s=None
        )
        stack.enter_context(running(model_service, lambda: http_ok(f"http://127.0.0.1:{model_port}/readyz")))
        grpc_port = free_port()
        target = f"127.0.0.1:{grpc_port}"
        # Made up per run and passed in the environment, never on a command line (ps shows those).
        password = secrets.token_urlsafe(18)
        backend = ManagedProcess(
            "backend",
            [sys.executable, "-m", "backend"],
            log_dir=tmp,
            env={
                "GRPC_HOST": "127.0.0.1",
                "GRPC_PORT": str(grpc_port),
                "MODEL_URL": f"http://127.0.0.1:{model_port}",
                "MONGODB_URI": mongo.uri,
                "MONGODB_DATABASE": "soak",
                "LOCAL_MODE": "true",
                "FIRST_ADMIN_USERNAME": ADMIN,
                "FIRST_ADMIN_PASSWORD": password,
                # Nobody listens there: drift must not send a developer's Prefect a retraining run.
                "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
                "RETRAIN_ON_DRIFT": "false",
                "LOG_LEVEL": "WARNING",
            },
        )
        stack.enter_context(running(backend, lambda: serving(target), timeout=90))
        yield SoakStack(
            target=target,
            login=(ADMIN, password),
            processes={
                "backend": backend,
                "model service": model_service,
                "MongoDB (nx-27017)": mongo.process,
                "MLflow": registry.process,
            },
        )
