"""Each deployable folder runs on its own lock alone: installed into a fresh venv, every module imports.

The test venv holds every service's dependencies at once, so an import that a service's lock lacks
would pass everywhere but in that service's image. Here each lock is installed alone (uv, from its
cache after the first run) and each module of the folder is imported in a fresh interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.processes import ROOT
from tests.support import skip_or_fail

# The folder, where its modules are imported from, and the modules' package prefix ("" for bento/,
# whose service.py and train.py are top-level modules under `bentoml serve`).
SERVICES = {
    "backend": (ROOT, "backend"),
    "frontend": (ROOT, "frontend"),
    "bento": (ROOT / "bento", ""),
    "pipelines": (ROOT, "pipelines"),
}
# Where a folder's image finds code beyond its own: the runner imports bento/'s training code.
EXTRA_PATH = {"pipelines": str(ROOT / "bento")}


def modules_of(service: str) -> list[str]:
    folder = ROOT / service
    names = []
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder).with_suffix("")
        parts = [p for p in relative.parts if p != "__init__"]
        prefix = SERVICES[service][1]
        names.append(".".join([prefix, *parts] if prefix else parts) or prefix)
    return [n for n in names if n]


# These venvs import each module once and are thrown away: compiling all of it at install (what
# the noxfile asks of uv for the long-lived venvs) would cost more than it saves.
INSTALL_ENV = {**os.environ, "UV_COMPILE_BYTECODE": "0"}


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env or INSTALL_ENV, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_module_imports_with_only_the_services_lock(service: str, tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        skip_or_fail("uv is not installed (pip install uv)")
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    assert run(uv, "venv", "--quiet", "--python", "3.11", str(venv)).returncode == 0
    installed = run(uv, "pip", "install", "--python", python, "-r", f"{service}/requirements.txt")
    assert installed.returncode == 0, installed.stderr
    if service != "bento":  # backend and frontend images install the generated stubs beside the lock
        stubs = run(uv, "pip", "install", "--python", python, "--no-deps", "./proto")
        assert stubs.returncode == 0, stubs.stderr

    modules = modules_of(service)
    assert len(modules) > 3
    cwd, _ = SERVICES[service]
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    # Only the venv's own packages (and EXTRA_PATH): no user site; BentoML stays offline and local.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONNOUSERSITE": "1",
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "MPLCONFIGDIR": str(tmp_path / "matplotlib"),
        "HOME": str(tmp_path),
        **({"PYTHONPATH": EXTRA_PATH[service]} if service in EXTRA_PATH else {}),
    }
    imported = run(python, "-c", script, *modules, cwd=cwd, env=env)
    assert imported.returncode == 0, f"{service}: {imported.stderr[-3000:]}"


def test_a_module_needing_a_package_outside_the_lock_fails_to_import(tmp_path: Path) -> None:
    """The check above can fail: an import the lock does not provide is an error in such a venv."""
    uv = shutil.which("uv")
    if uv is None:
        skip_or_fail("uv is not installed (pip install uv)")
    venv = tmp_path / "venv"
    assert run(uv, "venv", "--quiet", "--python", "3.11", str(venv)).returncode == 0
    result = run(str(venv / "bin" / "python"), "-c", "import pandas", env={"PYTHONNOUSERSITE": "1"})
    assert result.returncode != 0
    assert "No module named 'pandas'" in result.stderr
