"""Reload against real `bentoml serve` processes: new versions, every worker, no failed request, and
artifacts whose sha256 does not match are never unpickled."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import httpx
import pytest
from fruitstack_model.exceptions import ModelIntegrityError
from fruitstack_model.model_store import load_verified

from tests.fixtures.model_service import ModelService, StartModelService, artifact_path, latest_version

ROW = [5.9, 3.0, 5.1, 1.8]


async def test_reload_under_a_stream_of_requests_switches_every_worker_and_fails_none(
    model_service_factory: StartModelService,
) -> None:
    service = model_service_factory(workers=2)
    before = service.version
    failures: list[str] = []
    seen: list[str] = []
    stop = asyncio.Event()

    async def caller(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                response = await http.post("/predict_rows", json={"rows": [ROW, ROW]})
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text}")
            else:
                seen.append(response.json()["model_version"])

    # Each caller has its own connection pool, so the stream reaches both workers.
    clients = [httpx.AsyncClient(base_url=service.url, timeout=30) for _ in range(6)]
    callers = [asyncio.create_task(caller(http)) for http in clients]
    try:
        new = await asyncio.to_thread(service.train, seed=7)
        assert new != before
        served_before_reload = len(seen)
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
            reload = await http.post("/reload", json={})
        calls_at_reload = len(seen)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*callers)
        for http in clients:
            await http.aclose()

    assert failures == []
    assert reload.status_code == 200, reload.text
    assert reload.json() == {"previous_version": before, "current_version": new}
    assert served_before_reload > 0
    assert set(seen[:served_before_reload]) == {before}
    assert len(seen) > calls_at_reload
    assert seen[-1] == new
    # After /reload answered, fresh connections (spread over both workers) all get the new model.
    for _ in range(20):
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            response = await http.post("/predict", json={"features": dict(zip(INFO_IRIS, ROW, strict=True))})
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == new


INFO_IRIS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]


async def test_reload_to_another_dataset_changes_the_schema(private_model_service: ModelService) -> None:
    service = private_model_service
    wine = await asyncio.to_thread(service.train, dataset="wine", seed=1)
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        assert (await http.post("/reload", json={})).json()["current_version"] == wine
        info = (await http.post("/model", json={})).json()
        assert info["dataset"] == "wine"
        assert len(info["features"]) == 13
        iris_row = await http.post("/predict_rows", json={"rows": [ROW]})
        assert iris_row.status_code == 400
        assert "the model expects 13" in iris_row.text


async def test_reload_refuses_an_artifact_whose_sha256_does_not_match(
    private_model_service: ModelService,
) -> None:
    service = private_model_service
    tampered = await asyncio.to_thread(service.train, seed=11)
    artifact = artifact_path(service.bentoml_home, tampered)
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        response = await http.post("/reload", json={})
        assert response.status_code == 409, response.text
        assert "refusing to load" in response.text
        assert tampered in response.text
        # Still serving the verified model.
        again = await http.post("/predict_rows", json={"rows": [ROW]})
        assert again.status_code == 200
        assert again.json()["model_version"] == service.version


class _LeavesAFootprint:
    """Unpickling this creates a file: proof of whether a pickle was ever loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.path),))


def test_a_swapped_artifact_is_never_unpickled(model_store_template: Path, tmp_path: Path) -> None:
    """Someone replaces model.pkl with a pickle that runs code: the hash check stops it first."""
    import shutil

    import bentoml
    from bentoml._internal.models import ModelStore

    home = tmp_path / "home"
    shutil.copytree(model_store_template, home)
    version = latest_version(home)
    footprint = tmp_path / "pwned"
    artifact_path(home, version).write_bytes(pickle.dumps(_LeavesAFootprint(footprint)))
    stored = bentoml.models.get(f"fruitstack-classifier:{version}", _model_store=ModelStore(home / "models"))
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        load_verified(stored)
    assert not footprint.exists()
    # Not vacuous: the same bytes do run code when unpickled.
    pickle.loads(artifact_path(home, version).read_bytes())
    assert footprint.exists()
