"""Workers following the champion, in-process against the real session MLflow server: through the
marker file after a /reload elsewhere, by polling the alias, and never onto an unverified artifact."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from fruitstack_model.exceptions import ModelIntegrityError, RegistryUnavailable
from fruitstack_model.live_model import LiveModel, ModelSource, VersionMarker
from fruitstack_model.model_store import LoadedModel, load_verified
from fruitstack_model.registry import Registry

from tests.fixtures.mlflow import unique_model_name
from tests.fixtures.model_service import RegistryTemplate, champion_version, train_model


@pytest.fixture
def registry(registry_template: RegistryTemplate, tmp_path: Path) -> Iterator[Registry]:
    """A registered model of this test's own (the template's version 1), and a private BentoML store."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    name = unique_model_name()
    registry_template.copy_to(name)
    with BentoMLContainer.model_store.patch(ModelStore(tmp_path / "models")):
        yield Registry(registry_template.mlflow.url, name)


def train_into(registry: Registry, template: RegistryTemplate, *, seed: int, promote: bool = True) -> str:
    extra = ["--promote"] if promote else []
    return train_model(template.mlflow, registry.name, seed=seed, extra_args=extra).version


def two_workers(registry: Registry, marker_path: Path) -> tuple[LiveModel, LiveModel]:
    source = ModelSource(registry)
    return (
        LiveModel.start(source, marker=VersionMarker(marker_path)),
        LiveModel.start(source, marker=VersionMarker(marker_path)),
    )


async def test_a_reload_in_one_worker_reaches_the_other(
    registry: Registry, registry_template: RegistryTemplate, tmp_path: Path
) -> None:
    one, other = two_workers(registry, tmp_path / "serving")
    first = one.model.version
    new = train_into(registry, registry_template, seed=5)
    # Registering alone changes nothing until a reload (or a poll, below).
    assert (await one.current()).version == (await other.current()).version == first
    assert await one.reload() == (first, new)
    assert (await other.current()).version == new
    assert (await one.current()).version == new


async def test_polling_follows_a_promotion_and_a_rollback(
    registry: Registry, registry_template: RegistryTemplate, tmp_path: Path
) -> None:
    one, other = two_workers(registry, tmp_path / "serving")
    first = one.model.version
    new = train_into(registry, registry_template, seed=5)
    await other.check_champion()  # what the poll task does every poll_interval_s
    assert other.model.version == new
    assert other.aliases == ("champion",)
    assert other.status.reachable is True
    assert other.status.champion == new
    # A rollback made by one worker moves the alias; the other follows it by polling alone.
    assert await one.reload(first) == (first, first)  # it never left `first`
    assert champion_version(registry_template.mlflow, registry.name) == first
    await other.check_champion()
    assert other.model.version == first


async def test_a_candidate_the_gate_refused_is_not_followed(
    registry: Registry, registry_template: RegistryTemplate, tmp_path: Path
) -> None:
    (worker, _) = two_workers(registry, tmp_path / "serving")
    first = worker.model.version
    weak = train_model(registry_template.mlflow, registry.name, params=["C=0.0001"]).version
    await worker.check_champion()
    assert worker.model.version == first != weak


class _FirstDownloadTimesOut(ModelSource):
    """The real registry, except that the first download of a version times out."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self.failed: set[str] = set()

    def load(self, version: str) -> LoadedModel:
        if version not in self.failed:
            self.failed.add(version)
            raise RegistryUnavailable(f"the MLflow registry did not answer in time for version {version}")
        return super().load(version)


async def test_a_champion_that_failed_to_load_for_a_passing_reason_is_tried_again(
    registry: Registry, registry_template: RegistryTemplate, tmp_path: Path
) -> None:
    worker = LiveModel.start(ModelSource(registry), marker=VersionMarker(tmp_path / "serving"))
    first = worker.model.version
    flaky = LiveModel(
        worker.model, source=_FirstDownloadTimesOut(registry), marker=VersionMarker(tmp_path / "serving")
    )
    new = train_into(registry, registry_template, seed=5)
    await flaky.check_champion()
    assert flaky.model.version == first  # the download failed: still serving the verified model
    await flaky.check_champion()  # the next poll
    assert flaky.model.version == new


async def test_a_tampered_cache_is_downloaded_again_and_a_tampered_registry_is_refused(
    registry: Registry, registry_template: RegistryTemplate, tmp_path: Path
) -> None:
    source = ModelSource(registry)
    worker = LiveModel.start(source, marker=VersionMarker(tmp_path / "serving"))
    first = worker.model.version
    cached = source.cache.get(registry.name, first)
    assert cached is not None
    # Someone changes the cached pickle: the registry's sha256 wins, the version is fetched afresh.
    import bentoml

    cache_file = Path(bentoml.models.get(f"{registry.name}:{first}").path) / "model.pkl"
    cache_file.write_bytes(cache_file.read_bytes() + b"\x00")
    assert source.load(first).sha256 == cached.record.sha256
    # A version whose recorded sha256 does not match its artifact is never served.
    new = train_model(registry_template.mlflow, registry.name, params=["C=0.0001"]).version  # challenger
    registry.set_tags(new, {"artifact_sha256": "0" * 64})
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        await worker.reload(new)
    assert champion_version(registry_template.mlflow, registry.name) == first  # the alias stayed
    assert (await worker.current()).version == first


async def test_a_failing_follow_keeps_serving_the_verified_model(
    registry: Registry, registry_template: RegistryTemplate, tmp_path: Path
) -> None:
    one, other = two_workers(registry, tmp_path / "serving")
    first = one.model.version
    VersionMarker(tmp_path / "serving").write("987")  # no such version
    assert (await other.current()).version == first


async def test_an_unreachable_registry_keeps_the_model_and_says_so(
    registry: Registry, registry_template: RegistryTemplate, tmp_path: Path
) -> None:
    worker = LiveModel.start(ModelSource(registry), marker=VersionMarker(tmp_path / "serving"))
    first = worker.model.version
    from scripts.processes import free_port

    gone = Registry(f"http://127.0.0.1:{free_port()}", registry.name)  # nothing listens there
    offline = LiveModel(worker.model, source=ModelSource(gone), marker=VersionMarker(tmp_path / "serving"))
    await offline.check_champion()
    assert offline.model.version == first
    assert offline.status.reachable is False
    assert "MLflow registry" in (offline.status.error or "")
    with pytest.raises(RegistryUnavailable, match=r"MLflow registry at http://127\.0\.0\.1:"):
        await offline.reload()
    # A worker starting meanwhile serves the version the workers served last, from its cache.
    restarted = LiveModel.start(ModelSource(gone), marker=VersionMarker(tmp_path / "serving"))
    assert restarted.model.version == first
    assert restarted.status.reachable is False


class _LeavesAFootprint:
    """Unpickling this creates a file: proof of whether a pickle was ever loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.path),))


def test_a_swapped_artifact_is_never_unpickled(registry_template: RegistryTemplate, tmp_path: Path) -> None:
    """Someone replaces model.pkl with a pickle that runs code: the hash check stops it first."""
    client = registry_template.mlflow.client()
    registered = client.get_model_version(registry_template.registered_model, registry_template.version)
    footprint = tmp_path / "pwned"
    evil = pickle.dumps(_LeavesAFootprint(footprint))
    info = Registry(registry_template.mlflow.url).fetch(registry_template.version).info
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        load_verified(
            name="fruitstack-classifier",
            version=registry_template.version,
            run_id=registered.run_id,
            artifact=evil,
            metadata=info,
            sha256=registered.tags["artifact_sha256"],
        )
    assert not footprint.exists()
    # Not vacuous: the same bytes do run code when unpickled.
    pickle.loads(evil)
    assert footprint.exists()
