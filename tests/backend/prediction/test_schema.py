"""Input checks against the model schema: each bad input names the feature and the problem."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.exceptions import InvalidArgument
from backend.prediction.schema import ModelInfo

SCHEMA = ModelInfo.from_json(
    {
        "name": "m",
        "version": "v1",
        "dataset": "iris",
        "features": [{"name": n, "min": 0, "max": 1, "mean": 0.5} for n in ("a", "b")],
        "classes": ["x", "y"],
        "metrics": {"accuracy": 1.0},
        "trained_at": "2026-11-26T08:00:00+00:00",
        "training_sample": {"columns": {"a": [0.1], "b": [0.2]}, "labels": ["x"]},
    }
)


def test_row_is_in_model_order() -> None:
    assert SCHEMA.row({"b": 2.0, "a": 1.0}) == [1.0, 2.0]


@pytest.mark.parametrize(
    ("features", "words"),
    [
        ({"a": 1.0}, ["missing", "'b'"]),
        ({"a": 1.0, "b": 2.0, "c": 3.0}, ["unknown", "'c'"]),
        ({"a": 1.0, "c": 3.0}, ["missing", "'b'", "unknown", "'c'"]),
        ({}, ["missing", "'a'", "'b'"]),
        ({"a": math.nan, "b": 1.0}, ["'a'", "finite", "nan"]),
        ({"a": 1.0, "b": -math.inf}, ["'b'", "finite", "-inf"]),
    ],
)
def test_bad_rows_name_the_feature_and_the_problem(features: dict[str, float], words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        SCHEMA.row(features)
    for word in words:
        assert word in caught.value.message


def test_matrix_stacks_columns_in_model_order() -> None:
    x = SCHEMA.matrix({"b": np.array([3.0, 4.0]), "a": np.array([1.0, 2.0])})
    np.testing.assert_array_equal(x, [[1.0, 3.0], [2.0, 4.0]])


def test_matrix_rejects_ragged_columns_and_non_finite_values() -> None:
    with pytest.raises(InvalidArgument, match="same number of rows"):
        SCHEMA.matrix({"a": np.zeros(2), "b": np.zeros(3)})
    with pytest.raises(InvalidArgument, match=r"'b'.*finite.*row 1"):
        SCHEMA.matrix({"a": np.zeros(2), "b": np.array([0.0, np.nan])})
    with pytest.raises(InvalidArgument, match="missing feature"):
        SCHEMA.matrix({"a": np.zeros(2)})
