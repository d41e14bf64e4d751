"""Workers following each other's reloads through the marker file, in-process and deterministic."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fruitstack_model.datasets import load_dataset
from fruitstack_model.exceptions import ModelIntegrityError
from fruitstack_model.live_model import LiveModel, VersionMarker
from fruitstack_model.model_store import dump_pipeline, latest_stored, load_verified, save_to_store
from train import train

from tests.fixtures.model_service import artifact_path, latest_version


@pytest.fixture
def store(model_store_template: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the template store, made BentoML's store for this test."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = tmp_path / "home"
    shutil.copytree(model_store_template, home)
    with BentoMLContainer.model_store.patch(ModelStore(home / "models")):
        yield home


def register(seed: int) -> str:
    result = train(load_dataset("iris"), seed=seed, holdout=0.25, progress=False)
    return save_to_store(artifact=dump_pipeline(result.pipeline), metadata=result.metadata).split(":")[1]


def two_workers(marker_path: Path) -> tuple[LiveModel, LiveModel]:
    return (
        LiveModel(load_verified(latest_stored()), marker=VersionMarker(marker_path)),
        LiveModel(load_verified(latest_stored()), marker=VersionMarker(marker_path)),
    )


async def test_a_reload_in_one_worker_reaches_the_other(store: Path, tmp_path: Path) -> None:
    first = latest_version(store)
    one, other = two_workers(tmp_path / "serving")
    new = register(seed=5)
    # Registering alone changes nothing: workers switch on /reload only.
    assert (await one.current()).version == (await other.current()).version == first
    assert await one.reload() == (first, new)
    assert (await other.current()).version == new
    assert (await one.current()).version == new


async def test_a_failing_follow_keeps_serving_the_verified_model(store: Path, tmp_path: Path) -> None:
    first = latest_version(store)
    one, other = two_workers(tmp_path / "serving")
    tampered = register(seed=6)
    # The reloading worker checks the hash and refuses...
    artifact = artifact_path(store, tampered)
    artifact.write_bytes(artifact.read_bytes() + b"!")
    with pytest.raises(ModelIntegrityError):
        await one.reload()
    assert (await one.current()).version == first
    # ...and a worker told by the marker to load it (or a deleted version) keeps its model too.
    VersionMarker(tmp_path / "serving").write(tampered)
    assert (await other.current()).version == first
    VersionMarker(tmp_path / "serving").write("no-such-version")
    assert (await other.current()).version == first
