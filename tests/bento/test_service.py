"""The HTTP API, run twice: in-process through the service's ASGI app, and against `bentoml serve`.

Both answer with the champion train.py registered in a real MLflow server; predictions must equal
the same artifact called in-process, and every bad input must be a 400 whose message names the
problem.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from fruitstack_model.datasets import load_dataset
from starlette.testclient import TestClient

from tests.fixtures.model_service import ModelService, RegistryTemplate, bento_env

IRIS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
CLASSES = ["setosa", "versicolor", "virginica"]
ROW = [5.9, 3.0, 5.1, 1.8]


@pytest.fixture(scope="module")
def asgi_client(
    registry_template: RegistryTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """The service's ASGI app in this process, serving the template, with a BentoML store of its own."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = tmp_path_factory.mktemp("bentoml-asgi")
    with (
        pytest.MonkeyPatch.context() as env,
        BentoMLContainer.model_store.patch(ModelStore(home / "models")),
    ):
        variables = bento_env(
            home, mlflow=registry_template.mlflow, registered_model=registry_template.registered_model
        )
        for key, value in variables.items():
            env.setenv(key, value)
        import service

        # bentoml.service is typed as returning the class; it returns a Service wrapping it.
        app = service.FruitstackModel.to_asgi()  # type: ignore[attr-defined]
        with TestClient(app, base_url="http://asgi") as client:
            yield client


@pytest.fixture(scope="module", params=["asgi", "serve"])
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    if request.param == "asgi":
        yield request.getfixturevalue("asgi_client")
        return
    service: ModelService = request.getfixturevalue("model_service")
    with httpx.Client(base_url=service.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def served(registry_template: RegistryTemplate) -> tuple[str, Any]:
    """(version, pipeline) of the model both clients serve: the template's champion."""
    return registry_template.version, joblib.load(registry_template.artifact)


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def post_npy(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/predict_bulk", content=body, headers={"Content-Type": "application/octet-stream"})


def error_text(response: httpx.Response) -> str:
    # BentoML 1.4 answers its exceptions as [{"error": msg}] and pydantic errors as {"error", "detail"}.
    return response.text


def test_predict_matches_the_model_in_process(client: httpx.Client, served: tuple[str, Any]) -> None:
    version, pipeline = served
    response = client.post("/predict", json={"features": dict(zip(IRIS, ROW, strict=True))})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = pipeline.predict_proba(np.asarray([ROW]))[0]
    assert body["model_version"] == version == response.headers["X-Model-Version"]
    assert list(body["probabilities"]) == CLASSES
    np.testing.assert_allclose(list(body["probabilities"].values()), expected, rtol=0, atol=1e-12)
    assert body["label"] == CLASSES[int(expected.argmax())] == pipeline.predict(np.asarray([ROW]))[0]


def test_predict_rows_matches_the_model_in_process(client: httpx.Client, served: tuple[str, Any]) -> None:
    version, pipeline = served
    rows = load_dataset("iris").features[::7]
    response = client.post("/predict_rows", json={"rows": rows.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == version
    assert body["classes"] == CLASSES
    np.testing.assert_allclose(body["probabilities"], pipeline.predict_proba(rows), rtol=0, atol=1e-12)
    assert body["labels"] == pipeline.predict(rows).tolist()


@pytest.mark.parametrize("n_rows", [1, 30_000])  # the larger one is scored off the event loop
def test_predict_bulk_matches_the_model_in_process(
    client: httpx.Client, served: tuple[str, Any], n_rows: int
) -> None:
    version, pipeline = served
    rows = np.random.default_rng(0).uniform(0, 8, size=(n_rows, 4))
    response = post_npy(client, npy(rows))
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == version
    assert response.headers["Content-Type"] == "application/octet-stream"
    probabilities = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(rows), rtol=0, atol=1e-12)


def test_model_describes_the_served_version(
    client: httpx.Client, served: tuple[str, Any], registry_template: RegistryTemplate
) -> None:
    version, _ = served
    response = client.post("/model", json={})
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["name"] == "fruitstack-classifier"
    assert info["version"] == version
    registered = registry_template.mlflow.client().get_model_version("fruitstack-classifier", version)
    assert info["run_id"] == registered.run_id
    assert info["aliases"] == ["champion"]
    assert info["registry"]["reachable"] is True
    assert info["registry"]["champion"] == version
    assert info["registry"]["tracking_uri"] == registry_template.mlflow.url
    assert info["dataset"] == "iris"
    assert [f["name"] for f in info["features"]] == IRIS
    assert all(set(f) == {"name", "min", "max", "mean"} for f in info["features"])
    assert info["classes"] == CLASSES
    assert info["metrics"]["accuracy"] >= 0.9
    assert set(info["metrics"]) == {"accuracy", "f1_macro"}
    assert np.asarray(info["confusion_matrix"]).shape == (3, 3)
    assert info["trained_at"]
    assert list(info["training_sample"]["columns"]) == IRIS
    assert "scikit-learn" in info["library_versions"]
    # The sha256 recorded at registration is the one of the bytes the registry holds.
    assert info["sha256"] == hashlib.sha256(registry_template.artifact.read_bytes()).hexdigest()
    assert info["sha256"] == registered.tags["artifact_sha256"]


def test_reload_without_a_newer_model_keeps_the_version(
    client: httpx.Client, served: tuple[str, Any]
) -> None:
    version, _ = served
    response = client.post("/reload", json={})
    assert response.status_code == 200, response.text
    assert response.json() == {"previous_version": version, "current_version": version}


VALID = dict(zip(IRIS, ROW, strict=True))


def features(**changes: Any) -> dict[str, Any]:
    """A valid /predict body with some features replaced (None is sent as JSON null)."""
    return {"features": {**VALID, **changes}}


def raw_features(value: str) -> str:
    """A /predict body with a JSON token Python's json cannot write (NaN, 1e999) for sepal_length_cm."""
    rest = '"sepal_width_cm": 3, "petal_length_cm": 5, "petal_width_cm": 2'
    return '{"features": {"sepal_length_cm": ' + value + ", " + rest + "}}"


WITHOUT_PETAL_WIDTH = {"features": {k: v for k, v in VALID.items() if k != "petal_width_cm"}}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/predict", WITHOUT_PETAL_WIDTH, "missing feature(s): petal_width_cm"),
        ("/predict", features(colour=3), "unknown feature(s): colour"),
        ("/predict", features(sepal_width_cm="wide"), "feature 'sepal_width_cm' must be a number"),
        ("/predict", features(sepal_width_cm=None), "feature 'sepal_width_cm' must be a number, got null"),
        ("/predict", features(sepal_width_cm=True), "must be a number, got boolean"),
        ("/predict", raw_features("NaN"), "feature 'sepal_length_cm' must be a finite number, got nan"),
        ("/predict", raw_features("1e999"), "must be a finite number, got inf"),
        ("/predict", {"features": [1, 2, 3, 4]}, "features"),
        ("/predict", {}, "features"),
        ("/predict", "not json", "Invalid JSON"),
        ("/predict_rows", {"rows": [ROW, ROW[:3]]}, "row 1 has 3 values; the model expects 4"),
        (
            "/predict_rows",
            {"rows": [ROW, [*ROW[:3], "x"]]},
            "row 1, feature 'petal_width_cm' must be a number",
        ),
        (
            "/predict_rows",
            '{"rows": [[5.9, 3.0, 5.1, -Infinity]]}',
            "feature 'petal_width_cm' must be a finite",
        ),
        ("/predict_rows", {"rows": []}, "rows is empty"),
        ("/predict_rows", {"rows": "5.9,3.0"}, "rows"),
    ],
)
def test_bad_json_input_is_a_400_naming_the_problem(
    client: httpx.Client, path: str, body: dict[str, Any] | str, message: str
) -> None:
    if isinstance(body, str):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    assert message in error_text(response)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not an npy file", "not a NumPy .npy file"),
        (npy(np.ones((3, 5))), "shape (3, 5); expected (n_rows, 4)"),
        (npy(np.ones(4)), "shape (4,)"),
        (
            npy(np.array([[1.0, 2.0, np.nan, 4.0]])),
            "row 0, feature 'petal_length_cm' must be a finite number, got nan",
        ),
        (
            npy(np.array([[1.0, 2.0, 3.0, np.inf]])),
            "feature 'petal_width_cm' must be a finite number, got inf",
        ),
        (npy(np.array([[1, 2, 3, 4]], dtype=object)), "not a NumPy .npy file"),
        (npy(np.ones((0, 4))), "no rows"),
    ],
)
def test_bad_npy_input_is_a_400_naming_the_problem(client: httpx.Client, body: bytes, message: str) -> None:
    response = post_npy(client, body)
    assert response.status_code == 400, response.text
    assert message in error_text(response)
