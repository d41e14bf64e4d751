"""grpcurl against the real backend and model service, with JSON typed as the README shows it."""

from __future__ import annotations

import json

import pytest

from backend.auth.roles import Role
from tests.fixtures.backend import RunningBackend, grpcurl_header, mint_token
from tests.support import run_grpcurl

# The README's example, character for character: a typical setosa flower.
PREDICT_JSON = (
    '{"features": {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, '
    '"petal_length_cm": 1.4, "petal_width_cm": 0.2}}'
)
# The same with a typo in one feature name.
TYPO_JSON = PREDICT_JSON.replace("petal_length_cm", "petal_lenght_cm")
# Predictions and the model description are reads: a viewer may.
VIEWER = grpcurl_header(mint_token(Role.VIEWER))


async def test_grpcurl_predict_and_get_model(backend_with_model: RunningBackend) -> None:
    target = backend_with_model.target
    code, out, err = await run_grpcurl(
        "-plaintext", *VIEWER, "-d", PREDICT_JSON, target, "fruitstack.v1.PredictionService/Predict"
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["label"] == "setosa"
    assert set(answer["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert answer["probabilities"]["setosa"] > 0.9
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)

    code, out, err = await run_grpcurl(
        "-plaintext", *VIEWER, target, "fruitstack.v1.PredictionService/GetModel"
    )
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
    code, _, err = await run_grpcurl(
        "-plaintext",
        *VIEWER,
        "-d",
        TYPO_JSON,
        backend_with_model.target,
        "fruitstack.v1.PredictionService/Predict",
    )
    assert code != 0
    assert "InvalidArgument" in err
    assert "petal_lenght_cm" in err
    assert "petal_length_cm" in err
