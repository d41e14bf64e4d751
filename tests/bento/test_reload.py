"""Reload, rollback and polling against real `bentoml serve` processes and a real MLflow server: new
champions reach every worker with no failed request, a version number rolls back, artifacts
whose sha256 does not match are refused, and an unreachable registry stops only reloads."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from scripts.processes import MlflowServer, wait_until
from tests.fixtures.model_service import ModelService, StartModelService

ROW = [5.9, 3.0, 5.1, 1.8]


@dataclass
class Stream:
    """What six concurrent callers of /predict_rows saw while an action ran."""

    seen: list[str] = field(default_factory=list)  # model_version of each answer, in order
    failures: list[str] = field(default_factory=list)
    before_action: int = 0  # answers received before the action started
    at_action_end: int = 0


async def stream_during(
    service: ModelService, action: Callable[[], Awaitable[httpx.Response]]
) -> tuple[Stream, httpx.Response]:
    stream = Stream()
    stop = asyncio.Event()
    first_answer = asyncio.Event()  # the action starts once the stream flows

    async def caller(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                response = await http.post("/predict_rows", json={"rows": [ROW, ROW]})
            except httpx.HTTPError as exc:
                stream.failures.append(repr(exc))
                continue
            if response.status_code != 200:
                stream.failures.append(f"{response.status_code} {response.text}")
            else:
                stream.seen.append(response.json()["model_version"])
            first_answer.set()

    # Each caller has its own connection pool, so the stream reaches both workers.
    clients = [httpx.AsyncClient(base_url=service.url, timeout=30) for _ in range(6)]
    callers = [asyncio.create_task(caller(http)) for http in clients]
    try:
        await asyncio.wait_for(first_answer.wait(), timeout=60)
        stream.before_action = len(stream.seen)
        result = await action()
        stream.at_action_end = len(stream.seen)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*callers)
        for http in clients:
            await http.aclose()
    return stream, result


async def test_reload_and_rollback_under_a_stream_of_requests_switch_every_worker_and_fail_none(
    model_service_factory: StartModelService,
) -> None:
    service = model_service_factory(workers=2)
    before = service.version
    new = await asyncio.to_thread(service.train, seed=7)  # forced champion, not served until /reload
    assert new != before

    async def post(body: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
            return await http.post("/reload", json=body)

    for body, old, current in (({}, before, new), ({"version": before}, new, before)):
        stream, reload = await stream_during(service, functools.partial(post, body))
        assert stream.failures == []
        assert reload.status_code == 200, reload.text
        assert reload.json() == {"previous_version": old, "current_version": current}
        assert set(stream.seen[: stream.before_action]) == {old}
        assert set(stream.seen) <= {old, current}  # every answer names the old or the new version
        assert len(stream.seen) > stream.at_action_end
        assert stream.seen[-1] == current
        # After /reload answered, fresh connections (spread over both workers) all get it.
        for _ in range(20):
            async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
                features = dict(zip(INFO_IRIS, ROW, strict=True))
                response = await http.post("/predict", json={"features": features})
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == current
    assert service.champion() == before


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


async def test_version_info_tells_of_a_version_not_served_without_serving_it(
    private_model_service: ModelService,
) -> None:
    service = private_model_service
    wine = await asyncio.to_thread(service.train, dataset="wine", seed=1, promote=False)
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        served = (await http.post("/model", json={})).json()
        info = await http.post("/version_info", json={"version": wine})
        assert info.status_code == 200, info.text
        assert info.headers["X-Model-Version"] == served["version"] == service.version  # still served
        body = info.json()
        assert (body["version"], body["dataset"], len(body["features"])) == (wine, "wine", 13)
        assert body["reference"]["rows"] > 0
        assert body["reference"] != served["reference"]
        same = (await http.post("/version_info", json={"version": ""})).json()
        assert (same["version"], same["reference"]) == (served["version"], served["reference"])
        assert (await http.post("/version_info", json={"version": "999"})).status_code == 404
        assert (await http.post("/version_info", json={"version": "latest"})).status_code == 400


async def test_a_version_whose_artifact_changed_in_the_registry_is_refused(
    private_model_service: ModelService,
) -> None:
    service = private_model_service
    tampered = await asyncio.to_thread(
        lambda: service.train(params=["C=0.0001"], promote=False)
    )  # challenger
    service.corrupt(tampered)
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        response = await http.post("/reload", json={"version": tampered})
        assert response.status_code == 409, response.text
        assert "refusing to load" in response.text
        assert f"version {tampered}" in response.text
        # Still serving the verified model, and the champion alias did not move.
        again = await http.post("/predict_rows", json={"rows": [ROW]})
        assert again.status_code == 200
        assert again.json()["model_version"] == service.version
    assert service.champion() == service.version


async def test_reload_with_a_version_rolls_back_records_a_manual_decision_and_pins_it(
    private_model_service: ModelService,
) -> None:
    service = private_model_service
    first = service.version
    new = await asyncio.to_thread(service.train, seed=7)
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        assert (await http.post("/reload", json={})).json() == {
            "previous_version": first,
            "current_version": new,
        }
        rollback = await http.post("/reload", json={"version": first, "by": "alice"})
        assert rollback.status_code == 200, rollback.text
        assert rollback.json() == {"previous_version": new, "current_version": first}
        predicted = await http.post("/predict_rows", json={"rows": [ROW]})
        assert predicted.json()["model_version"] == first
        info = (await http.post("/model", json={})).json()
        assert info["version"] == first
        assert info["aliases"] == ["champion"]
        versions = (await http.post("/versions", json={})).json()
    assert service.champion() == first
    assert versions["champion"] == first
    assert versions["served_version"] == first
    assert [v["version"] for v in versions["versions"]] == [new, first]  # newest first
    rolled_back = versions["versions"][1]
    assert rolled_back["aliases"] == ["champion"]
    assert rolled_back["gate"]["decision"] == "manual"
    assert f"champion was v{new}" in rolled_back["gate"]["reason"]
    newest = versions["versions"][0]
    assert newest["gate"]["decision"] == "manual"  # trained with --promote
    assert newest["gate"]["candidate_score"] == newest["metrics"]["f1_macro"]
    assert newest["gate"]["champion_score"] is not None
    assert newest["run_id"]
    assert newest["created_at"].endswith("Z")
    assert len(newest["sha256"]) == 64
    assert "made champion by alice (a rollback)" in rolled_back["gate"]["reason"]
    # The rollback holds: a candidate the gate would promote (the same data: not worse) waits.
    pin = versions["pin"]
    assert (pin["version"], pin["by"]) == (first, "alice")
    assert pin["reason"] == f"alice chose v{first} (champion was v{new})"
    held = await asyncio.to_thread(service.train, promote=False)
    assert service.champion() == first
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        versions = (await http.post("/versions", json={})).json()
        gate = versions["versions"][0]["gate"]
        assert (versions["versions"][0]["version"], gate["decision"]) == (held, "challenger")
        assert gate["pinned_version"] == first
        assert gate["reason"].startswith("held: passes the gate")
        assert f"pinned to v{first} (alice chose v{first}" in gate["reason"]
        # Unpinned, the next candidate the gate passes is promoted again.
        assert (await http.post("/unpin", json={"by": "bob"})).json() == {"unpinned_version": first}
        assert (await http.post("/unpin", json={"by": "bob"})).json() == {"unpinned_version": None}
        assert (await http.post("/versions", json={})).json()["pin"] is None
    promoted = await asyncio.to_thread(service.train, promote=False)
    assert service.champion() == promoted


async def test_bad_versions_are_refused_with_the_reason(private_model_service: ModelService) -> None:
    async with httpx.AsyncClient(base_url=private_model_service.url, timeout=60) as http:
        not_a_number = await http.post("/reload", json={"version": "latest"})
        assert not_a_number.status_code == 400
        assert "registry version number" in not_a_number.text
        missing = await http.post("/reload", json={"version": "999"})
        assert missing.status_code == 404
        assert "version 999" in missing.text
    assert private_model_service.champion() == private_model_service.version


async def test_every_worker_follows_a_promotion_by_polling_alone(
    model_service_factory: StartModelService,
) -> None:
    service = model_service_factory(workers=2, poll_interval_s=1)
    new = await asyncio.to_thread(service.train, seed=7)  # nobody tells the service

    def every_worker_serves_the_new_champion() -> bool:
        # Fresh connections, spread over both workers; all of twenty must name the new version.
        seen = set()
        for _ in range(20):
            with httpx.Client(base_url=service.url, timeout=30) as http:
                seen.add(http.post("/predict_rows", json={"rows": [ROW]}).json()["model_version"])
        return seen == {new}

    wait_until(
        every_worker_serves_the_new_champion, timeout=60, what="both workers to serve the new champion"
    )


async def test_registry_outage_keeps_predictions_fails_reload_with_503_and_recovers(
    model_service_factory: StartModelService, private_mlflow_server: MlflowServer
) -> None:
    service = model_service_factory(mlflow=private_mlflow_server, poll_interval_s=1)
    version = service.version
    await asyncio.to_thread(private_mlflow_server.stop)
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        for _ in range(5):
            predicted = await http.post("/predict_rows", json={"rows": [ROW]})
            assert predicted.status_code == 200, predicted.text
            assert predicted.json()["model_version"] == version
        reload = await http.post("/reload", json={})
        assert reload.status_code == 503, reload.text
        assert "MLflow registry" in reload.json()["error"]
        assert private_mlflow_server.url in reload.json()["error"]
        versions = await http.post("/versions", json={})
        assert versions.status_code == 503
        assert "MLflow registry" in versions.json()["error"]
        registry = (await http.post("/model", json={})).json()["registry"]
        assert registry["reachable"] is False
        assert "unreachable" in registry["error"]

        # Back on the same port with the same data: reloads work again, nothing restarted.
        await asyncio.to_thread(private_mlflow_server.start)
        reload = await http.post("/reload", json={})
        assert reload.status_code == 200, reload.text
        assert reload.json() == {"previous_version": version, "current_version": version}
        registry = (await http.post("/model", json={})).json()["registry"]
        assert registry["reachable"] is True
        assert registry["error"] is None
