"""The whole stack in containers (docker-compose.yml), driven through its published ports and compose.

The tests share one stack (built once per module), so each one adds its own fruits and checks only
what it can see; the last test takes the stack down with its volume.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any, TypeVar

import grpc
import pytest
from fruitstack.v1 import (
    fruits_pb2,
    fruits_pb2_grpc,
    predictions_pb2,
    predictions_pb2_grpc,
    retraining_pb2,
    retraining_pb2_grpc,
)
from playwright.sync_api import Page
from shiny.playwright import controller

from scripts.processes import wait_until
from tests import support
from tests.browser import expect_table_cell, sign_in
from tests.fixtures.prefect import PrefectRest
from tests.fixtures.stack import (
    Bearer,
    ComposeStack,
    admin_password,
    all_fruit_ids,
    eventually,
    mean_row,
    unique,
    wait_for_backend,
)

# The first test also builds every image (minutes when the layer cache is cold).
pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

T = TypeVar("T")


@pytest.fixture(scope="module")
def grpcurl_executable() -> str:
    return support.grpcurl_executable()


@pytest.fixture(scope="module")
def token(grpcurl_executable: str, stack: ComposeStack) -> str:
    """An access token of the first admin, from a real Login through the published port."""
    body = {"username": "admin", "password": admin_password(stack)}
    answer = run_grpcurl(grpcurl_executable, stack, "fruitstack.v1.AuthService/Login", body=body)
    assert answer.returncode == 0, answer.stderr
    return str(json.loads(answer.stdout)["access_token"])


@pytest.fixture
def channel(stack: ComposeStack, token: str) -> Iterator[grpc.Channel]:
    """A channel to the published backend port on which every call carries the admin's token."""
    with grpc.insecure_channel(stack.backend_target) as plain:
        yield grpc.intercept_channel(plain, Bearer(token))


def run_grpcurl(
    grpcurl_executable: str,
    stack: ComposeStack,
    *args: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
) -> subprocess.CompletedProcess[str]:
    data = ["-d", json.dumps(body)] if body is not None else []
    header = ["-H", f"authorization: Bearer {token}"] if token else []
    return subprocess.run(
        [grpcurl_executable, "-plaintext", "-max-time", "30", *header, *data, stack.backend_target, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def grpcurl(
    grpcurl_executable: str,
    stack: ComposeStack,
    *args: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
) -> str:
    result = run_grpcurl(grpcurl_executable, stack, *args, body=body, token=token)
    assert result.returncode == 0, f"grpcurl {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def add_fruits(channel: grpc.Channel, count: int) -> set[str]:
    stub = fruits_pb2_grpc.FruitServiceStub(channel)
    return {
        stub.AddFruit(fruits_pb2.AddFruitRequest(name=unique("fruit")), timeout=30).fruit.id
        for _ in range(count)
    }


def test_grpcurl_lists_every_service(grpcurl_executable: str, stack: ComposeStack) -> None:
    services = set(grpcurl(grpcurl_executable, stack, "list").split())

    assert {
        "fruitstack.v1.FruitService",
        "fruitstack.v1.PredictionService",
        "grpc.health.v1.Health",
    } <= services
    assert any(s.startswith("grpc.reflection.") for s in services)


def test_grpcurl_add_fruit_without_a_token_is_unauthenticated(
    grpcurl_executable: str, stack: ComposeStack
) -> None:
    result = run_grpcurl(grpcurl_executable, stack, "fruitstack.v1.FruitService/AddFruit", body={"name": "x"})

    assert result.returncode != 0
    assert "Code: Unauthenticated" in result.stderr
    assert (
        "fruitstack.v1.FruitService/AddFruit needs a signed-in user with role editor or admin"
        in result.stderr
    )


def test_grpcurl_add_fruit_then_list_it(grpcurl_executable: str, stack: ComposeStack, token: str) -> None:
    name = unique("mango")

    added = json.loads(
        grpcurl(
            grpcurl_executable, stack, "fruitstack.v1.FruitService/AddFruit", body={"name": name}, token=token
        )
    )
    listed = json.loads(
        grpcurl(
            grpcurl_executable,
            stack,
            "fruitstack.v1.FruitService/ListFruits",
            body={"page_size": 10},
            token=token,
        )
    )

    assert added["fruit"]["name"] == name
    assert added["fruit"]["id"] in {f["id"] for f in listed["fruits"]}


def test_grpcurl_get_model_then_predict(grpcurl_executable: str, stack: ComposeStack, token: str) -> None:
    model = json.loads(
        grpcurl(grpcurl_executable, stack, "fruitstack.v1.PredictionService/GetModel", token=token)
    )["model"]
    row = {f["name"]: f["mean"] for f in model["features"]}

    predicted = json.loads(
        grpcurl(
            grpcurl_executable,
            stack,
            "fruitstack.v1.PredictionService/Predict",
            body={"features": row},
            token=token,
        )
    )

    assert model["name"] == "fruitstack-classifier"
    assert predicted["label"] in model["classes"]
    assert set(predicted["probabilities"]) == set(model["classes"])
    assert sum(predicted["probabilities"].values()) == pytest.approx(1.0)
    assert predicted["model_version"] == model["version"]


def test_the_served_model_is_the_champion_model_init_registered(
    grpcurl_executable: str, stack: ComposeStack, token: str
) -> None:
    answer = grpcurl(grpcurl_executable, stack, "fruitstack.v1.PredictionService/GetModel", token=token)
    model = json.loads(answer)["model"]
    # The registry's own answer, through the published MLflow port (the UI's API).
    query = urllib.parse.urlencode({"name": "fruitstack-classifier", "alias": "champion"})
    with urllib.request.urlopen(
        f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/alias?{query}"
    ) as response:
        champion = json.load(response)["model_version"]
    assert model["version"] == champion["version"] == "1"  # model-init registered the first version
    tags = {t["key"]: t["value"] for t in champion.get("tags", [])}
    assert tags["gate.decision"] == "champion"
    assert len(tags["artifact_sha256"]) == 64
    # model-init exited 0 after registering it, and stays exited.
    rows = [json.loads(line) for line in stack.compose("ps", "--all", "--format", "json").stdout.splitlines()]
    (init,) = [row for row in rows if row["Service"] == "model-init"]
    assert (init["State"], init["ExitCode"]) == ("exited", 0)


def test_only_frontend_backend_model_mlflow_and_prefect_are_published_and_only_on_localhost(
    stack: ComposeStack,
) -> None:
    rows = [json.loads(line) for line in stack.compose("ps", "--format", "json").stdout.splitlines()]
    published = {
        (row["Service"], p["TargetPort"], p["URL"])
        for row in rows
        for p in row.get("Publishers") or []
        if p["PublishedPort"]
    }

    assert published == {
        ("frontend", 8080, "127.0.0.1"),
        ("backend", 50051, "127.0.0.1"),
        ("model", 3000, "127.0.0.1"),
        ("mlflow", 5000, "127.0.0.1"),
        ("prefect", 4200, "127.0.0.1"),
    }


@pytest.mark.parametrize(
    ("service", "host", "port", "reachable"),
    [
        ("frontend", "mongo", 27017, False),
        ("frontend", "model", 3000, False),
        ("frontend", "backend", 50051, True),
        ("backend", "mongo", 27017, True),
    ],
)
def test_the_frontend_reaches_only_the_backend_and_only_the_backend_reaches_mongodb(
    stack: ComposeStack, service: str, host: str, port: int, reachable: bool
) -> None:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3)"
    connects = stack.exec_ok(service, "python", "-c", probe)

    assert connects is reachable


def test_secrets_are_files_and_not_in_the_environment(stack: ComposeStack) -> None:
    environment = stack.exec_output("backend", "env")
    files = stack.exec_output("backend", "ls", "/run/secrets").split()

    assert sorted(files) == ["auth_token_secret", "first_admin_password", "page_token_secret"]
    assert not any(
        name in environment for name in ("AUTH_TOKEN_SECRET", "PAGE_TOKEN_SECRET", "FIRST_ADMIN_PASSWORD")
    )


def test_the_retraining_runner_holds_its_own_password_and_no_other_secret(stack: ComposeStack) -> None:
    assert stack.exec_output("retrain-runner", "ls", "/run/secrets").split() == ["retrainer_password"]
    assert stack.exec_output("backend", "ls", "/run/service-secrets").split() == ["retrainer_password"]
    assert "FIRST_ADMIN_PASSWORD" not in stack.exec_output("retrain-runner", "env")


@pytest.mark.parametrize(("service", "reachable"), [("frontend", False), ("backend", False), ("model", True)])
def test_only_the_model_service_can_call_mlflow(stack: ComposeStack, service: str, reachable: bool) -> None:
    # A real API call by service name: it also proves --allowed-hosts accepts the Host "mlflow:5000".
    url = "http://mlflow:5000/api/2.0/mlflow/experiments/search?max_results=1"
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5)"
    assert stack.exec_ok(service, "python", "-c", probe) is reachable


def test_the_retraining_deployment_is_served_and_a_run_completes(
    stack: ComposeStack, channel: grpc.Channel
) -> None:
    # What the Prefect UI shows: the deployment the runner serves, with its five-minute schedule.
    prefect = PrefectRest(stack.prefect_api_url)
    try:
        deployment = prefect.deployment("retrain/fruitstack-classifier")
        assert deployment is not None
        assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [300.0]

        # Retrain now (RetrainingService), through the published backend port, runs in the runner.
        retraining = retraining_pb2_grpc.RetrainingServiceStub(channel)
        asked = retraining.Retrain(retraining_pb2.RetrainRequest(reason="e2e"), timeout=30)
        run = prefect.wait_for_end(asked.run.id, timeout=300)
    finally:
        prefect.close()

    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{stack.logs()}"
    status = retraining.GetRetrainingStatus(retraining_pb2.GetRetrainingStatusRequest(), timeout=30)
    (listed,) = [r for r in status.runs if r.id == asked.run.id]
    # Nobody gave feedback yet: the training data is model-init's, so nothing new is trained.
    assert (listed.state, listed.trigger, listed.outcome.result) == ("Completed", "on demand", "skipped")
    assert status.prefect_reachable
    assert status.schedule_interval_s == 300
    rows = [json.loads(line) for line in stack.compose("ps", "--format", "json").stdout.splitlines()]
    health = {row["Service"]: row.get("Health") for row in rows}
    assert health["prefect"] == health["retrain-runner"] == "healthy"


@pytest.mark.browser
def test_fruit_added_in_the_browser_is_listed(stack: ComposeStack, page: Page, channel: grpc.Channel) -> None:
    page.set_default_timeout(30_000)
    name = unique("kiwi")
    page.goto(stack.frontend_url)
    sign_in(page, "admin", admin_password(stack))

    controller.InputSubmitTextarea(page, "fruits-fruit_name").set(name, submit=True)

    # Newest first: the fruit just added tops the list the page shows ...
    expect_table_cell(page, "fruits-table", name, row=0, col=0)
    page.screenshot(path=stack.log_dir / "fruits.png", full_page=True)
    # ... and it went through the real backend into MongoDB.
    listed = fruits_pb2_grpc.FruitServiceStub(channel).ListFruits(fruits_pb2.ListFruitsRequest(), timeout=30)
    assert name in [f.name for f in listed.fruits]


def test_fruits_survive_a_backend_restart(stack: ComposeStack, channel: grpc.Channel) -> None:
    added = add_fruits(channel, 5)
    before = all_fruit_ids(channel)

    stack.compose("restart", "backend")
    wait_for_backend(stack)

    assert added <= before
    assert all_fruit_ids(channel) == before


def test_fruits_survive_down_and_up_without_volume_removal(
    stack: ComposeStack, channel: grpc.Channel
) -> None:
    added = add_fruits(channel, 5)
    before = all_fruit_ids(channel)

    stack.compose("down", "--timeout", "20")
    assert stack.containers() == []
    stack.up()

    assert added <= before
    assert all_fruit_ids(channel) == before


def test_stopped_model_gives_unavailable_predictions_while_fruits_work(
    stack: ComposeStack, channel: grpc.Channel
) -> None:
    predictions = predictions_pb2_grpc.PredictionServiceStub(channel)
    request = predictions_pb2.PredictRequest(features=mean_row(channel))
    version = predictions.Predict(request, timeout=30).model_version

    stack.compose("stop", "model")
    try:

        def unavailable() -> bool:
            try:
                predictions.Predict(request, timeout=15)
            except grpc.RpcError as exc:
                return bool(exc.code() == grpc.StatusCode.UNAVAILABLE)
            return False

        wait_until(
            unavailable, timeout=60, what="Predict to answer UNAVAILABLE with the model stopped", interval=1
        )
        added = add_fruits(channel, 1)
        assert added <= all_fruit_ids(channel)
    finally:
        stack.compose("start", "model")

    recovered = eventually(
        lambda: predictions.Predict(request, timeout=15), timeout=180, what="Predict after `start model`"
    )
    assert recovered.model_version == version


def test_down_with_volumes_removes_everything(stack: ComposeStack) -> None:
    assert stack.volume_exists()

    stack.compose("down", "--volumes", "--timeout", "20")

    assert stack.containers() == []
    assert not stack.volume_exists()
