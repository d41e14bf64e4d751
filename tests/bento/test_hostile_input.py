"""The model service's HTTP API under hostile input: a real answer or a clear 400, bounded, never NaN.

Against the session's real `bentoml serve` (iris, seed 42). 1e308 in two features overflows the
model's arithmetic (1e308 times a weight above 1 is inf, and inf - inf is NaN).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.fixtures.model_service import ModelService

IRIS = ["sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm"]
GOOD = [5.9, 3.0, 5.1, 1.8]
# Found by trying pairs of extremes on this model: these two overflow together.
OVERFLOWING = [1e308, 1e308, 5.1, 1.8]


@pytest.fixture(scope="module")
def http(model_service: ModelService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=model_service.url, timeout=30) as client:
        yield client


def assert_finite_json(response: httpx.Response) -> None:
    # orjson writes NaN as null; a real answer has neither.
    assert "null" not in response.text
    assert "NaN" not in response.text


@pytest.mark.parametrize("value", [1e308, -1e308])
def test_extreme_values_in_every_pair_of_features_answer_or_refuse_never_nan(
    http: httpx.Client, value: float
) -> None:
    refused = 0
    for a in range(4):
        for b in range(a + 1, 4):
            row = list(GOOD)
            row[a] = row[b] = value
            response = http.post("/predict", json={"features": dict(zip(IRIS, row, strict=True))})
            if response.status_code == 200:
                assert_finite_json(response)
                assert math.isclose(sum(response.json()["probabilities"].values()), 1.0)
            else:
                assert response.status_code == 400, response.text
                assert "overflows" in response.text
                assert IRIS[a] in response.text or IRIS[b] in response.text
                refused += 1
    assert refused > 0, "no pair overflowed: the refusal above was never exercised"


def test_an_overflowing_row_is_a_400_naming_its_features(http: httpx.Client) -> None:
    response = http.post("/predict", json={"features": dict(zip(IRIS, OVERFLOWING, strict=True))})
    assert response.status_code == 400, response.text
    assert "'sepal_length_cm' = 1e+308 (trained on 4.3 to 7.9)" in response.text
    assert "'sepal_width_cm' = 1e+308 (trained on 2 to 4.4)" in response.text
    assert "training range" in response.text


def test_in_predict_rows_an_overflowing_row_fails_alone(http: httpx.Client) -> None:
    response = http.post("/predict_rows", json={"rows": [GOOD, OVERFLOWING, GOOD]})
    assert response.status_code == 200, response.text
    assert_finite_json(response)
    body = response.json()
    assert [e["row"] for e in body["errors"]] == [1]
    assert "overflows" in body["errors"][0]["error"]
    assert body["labels"][1] == ""
    assert body["probabilities"][1] == []
    assert body["labels"][0] == body["labels"][2] != ""
    assert math.isclose(sum(body["probabilities"][0]), 1.0)


def test_in_predict_bulk_an_overflowing_row_is_named_as_the_caller_counts(http: httpx.Client) -> None:
    rows = np.asarray([GOOD, GOOD, OVERFLOWING, GOOD])
    buffer = io.BytesIO()
    np.save(buffer, rows)
    response = http.post(
        "/predict_bulk",
        content=buffer.getvalue(),
        headers={"Content-Type": "application/octet-stream", "X-Row-Offset": "1000"},
    )
    assert response.status_code == 400, response.text
    assert "row 1002:" in response.text
    assert "overflows" in response.text


def test_thousands_of_unknown_features_give_a_short_message(http: httpx.Client) -> None:
    features = {f"feature_number_{i:05d}_with_a_long_name": 1.0 for i in range(5000)}
    response = http.post("/predict", json={"features": features})
    assert response.status_code == 400
    assert len(response.content) < 1500, len(response.content)
    assert "and 4995 more" in response.text
    assert "missing feature(s): sepal_length_cm" in response.text


def test_a_very_long_feature_name_is_shortened_in_the_message(http: httpx.Client) -> None:
    features = {**dict(zip(IRIS, GOOD, strict=True)), "x" * 100_000: 1.0}
    response = http.post("/predict", json={"features": features})
    assert response.status_code == 400
    assert len(response.content) < 1000
    assert "unknown feature(s): " + "x" * 40 + "..." in response.text
