"""Input checks in isolation: each bad payload becomes InvalidInput naming the row/feature at fault."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fruitstack_model.exceptions import InvalidInput
from fruitstack_model.inputs import matrix_from_npy, matrix_from_rows, row_from_features

NAMES = ("a", "b", "c")


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_features_are_put_in_model_order() -> None:
    row = row_from_features({"c": 3, "a": 1.5, "b": -2}, NAMES)
    np.testing.assert_array_equal(row, [[1.5, -2.0, 3.0]])
    assert row.dtype == np.float64


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"a": 1, "b": 2}, "missing feature(s): c"),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, "unknown feature(s): d"),
        ({"a": 1, "b": 2, "x": 3}, "missing feature(s): c; unknown feature(s): x"),
        ({"a": "1", "b": 2, "c": 3}, "feature 'a' must be a number, got string '1'"),
        ({"a": 1, "b": None, "c": 3}, "feature 'b' must be a number, got null"),
        ({"a": 1, "b": True, "c": 3}, "feature 'b' must be a number, got boolean"),
        ({"a": 1, "b": 2, "c": [3]}, "feature 'c' must be a number, got array"),
        ({"a": float("nan"), "b": 2, "c": 3}, "feature 'a' must be a finite number, got nan"),
        ({"a": 1, "b": float("-inf"), "c": 3}, "feature 'b' must be a finite number, got -inf"),
        ({"a": 1, "b": 2, "c": 10**400}, "feature 'c' is too large"),
    ],
)
def test_bad_features_are_named(features: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        row_from_features(features, NAMES)


def test_rows_become_a_float_matrix() -> None:
    matrix = matrix_from_rows([[1, 2, 3], [4.5, 5, 6]], NAMES)
    np.testing.assert_array_equal(matrix, [[1, 2, 3], [4.5, 5, 6]])


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "rows is empty"),
        ([[1, 2, 3], [1, 2]], "row 1 has 2 values; the model expects 3 (a, b, c)"),
        ([[1, 2, 3], [1, "x", 3]], "row 1, feature 'b' must be a number, got string 'x'"),
        ([[1, 2, None]], "row 0, feature 'c' must be a number, got null"),
        ([[1, 2, False]], "row 0, feature 'c' must be a number, got boolean"),
        ([[1, 2, 3], [float("nan"), 2, 3]], "row 1, feature 'a' must be a finite number, got nan"),
        ([[1, 2, float("inf")]], "row 0, feature 'c' must be a finite number, got inf"),
        ([[1, 2, 10**400]], "row 0, feature 'c' is too large"),
    ],
)
def test_bad_rows_are_named(rows: list[list[Any]], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        matrix_from_rows(rows, NAMES)
    assert str(caught.value).startswith(message)


def test_npy_round_trip_accepts_integer_arrays_too() -> None:
    np.testing.assert_array_equal(
        matrix_from_npy(npy(np.arange(6).reshape(2, 3)), NAMES), [[0, 1, 2], [3, 4, 5]]
    )
    assert matrix_from_npy(npy(np.ones((4, 3))), NAMES).shape == (4, 3)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not a NumPy .npy file"),
        (b"[[1, 2, 3]]", "not a NumPy .npy file"),
        (npy(np.ones((2, 3)))[:-5], "not a NumPy .npy file"),
        (npy(np.array([[1, 2, 3]], dtype=object)), "not a NumPy .npy file"),  # would need a pickle
        (npy(np.array([["1", "2", "3"]])), "dtype <U1"),
        (npy(np.ones((2, 4))), "shape (2, 4); expected (n_rows, 3)"),
        (npy(np.ones(3)), "shape (3,)"),
        (npy(np.ones((1, 2, 3))), "shape (1, 2, 3)"),
        (npy(np.ones((0, 3))), "no rows"),
        (npy(np.array([[1, 2, 3], [1, np.nan, 3]])), "row 1, feature 'b' must be a finite number, got nan"),
        (npy(np.array([[1, 2, np.inf]])), "row 0, feature 'c' must be a finite number, got inf"),
    ],
)
def test_bad_npy_bodies_are_explained(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        matrix_from_npy(body, NAMES)
    assert message in str(caught.value)
