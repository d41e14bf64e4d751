"""The BentoML store as a cache shared by processes: the service's workers poll on the same schedule,
so they download a new champion and write it into the store in the same second."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

from fruitstack_model.model_store import ModelCache
from fruitstack_model.registry import FetchedModel, VersionRecord

VERSIONS = 25


def _fetched(version: int) -> FetchedModel:
    record = VersionRecord(name="shared", version=str(version), run_id="run", aliases=(), created_at="now")
    return FetchedModel(record=record, artifact=bytes([version]) * 100_000, info={"version": version})


def _cache_every_version(home: str, lock_dir: str, start: threading.Barrier) -> list[str]:
    os.environ["BENTOML_HOME"] = home  # before bentoml reads its configuration in this process
    cache = ModelCache(lock_dir=Path(lock_dir))
    problems = []
    for version in range(1, VERSIONS + 1):
        start.wait()  # both processes write the same version at the same moment
        try:
            cache.put(_fetched(version))
        except Exception as exc:
            problems.append(f"v{version}: {exc!r}")
            continue
        kept = cache.get("shared", str(version))
        if kept is None or kept.artifact != _fetched(version).artifact:
            problems.append(f"v{version}: not kept whole")
    return problems


def test_two_processes_caching_the_same_versions_at_once_both_succeed(tmp_path: Path) -> None:
    # Without the lock this failed: BentoML refused the second write of most versions ("already exists").
    context = multiprocessing.get_context("spawn")  # a fresh interpreter reads BENTOML_HOME anew
    with context.Manager() as manager, context.Pool(2) as pool:
        args = (str(tmp_path / "home"), str(tmp_path / "state"), manager.Barrier(2))
        results = [pool.apply_async(_cache_every_version, args) for _ in range(2)]
        problems = [problem for result in results for problem in result.get(timeout=300)]
    assert problems == []
