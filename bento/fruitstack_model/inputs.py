"""Turning request payloads into float64 matrices in the model's feature order, or InvalidInput.

Every message names the row and feature at fault, because the backend passes them on to users.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from fruitstack_model.exceptions import InvalidInput

# bool is an int subclass, but `true` is not a measurement; exact type checks keep it out.
_NUMBER_TYPES = frozenset({int, float})
_NPY_MAGIC = b"\x93NUMPY"


def row_from_features(features: Mapping[str, Any], names: Sequence[str]) -> npt.NDArray[np.float64]:
    """{name: number} for exactly the model's features -> a (1, n_features) matrix."""
    missing = [name for name in names if name not in features]
    unknown = [name for name in features if name not in names]
    problems = []
    if missing:
        problems.append(f"missing feature(s): {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown feature(s): {', '.join(unknown)}")
    if problems:
        raise InvalidInput(f"{'; '.join(problems)} (the model expects: {', '.join(names)})")
    values = [_number(features[name], where=f"feature '{name}'") for name in names]
    return np.asarray([values], dtype=np.float64)


def matrix_from_rows(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> npt.NDArray[np.float64]:
    """Lists of numbers in feature order -> (n_rows, n_features); the fast path checks types in bulk."""
    if not rows:
        raise InvalidInput("rows is empty; send at least one row")
    width = len(names)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidInput(
                f"row {i} has {len(row)} values; the model expects {width} ({', '.join(names)})"
            )
    if not {type(v) for row in rows for v in row} <= _NUMBER_TYPES:
        for i, row in enumerate(rows):
            for name, value in zip(names, row, strict=True):
                _number(value, where=f"row {i}, feature '{name}'")
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except OverflowError:  # an int too large for a float; find it for the message
        for i, row in enumerate(rows):
            for name, value in zip(names, row, strict=True):
                _number(value, where=f"row {i}, feature '{name}'")
        raise
    _check_finite(matrix, names)
    return matrix


def matrix_from_npy(body: bytes, names: Sequence[str]) -> npt.NDArray[np.float64]:
    """The bytes of an `np.save` file holding a real 2-D array -> (n_rows, n_features) float64."""
    if not body.startswith(_NPY_MAGIC):
        raise InvalidInput("the body is not a NumPy .npy file (write it with numpy.save)")
    try:
        # allow_pickle=False: an .npy file can embed a pickle, which would run code.
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidInput(f"the body is not a NumPy .npy file ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise InvalidInput("the body is not a single NumPy .npy array")
    if array.dtype.kind not in "fiu":
        raise InvalidInput(f"the array has dtype {array.dtype}; send float64 values")
    if array.ndim != 2 or array.shape[1] != len(names):
        raise InvalidInput(
            f"the array has shape {array.shape}; expected (n_rows, {len(names)}) "
            f"with columns {', '.join(names)}"
        )
    if array.shape[0] == 0:
        raise InvalidInput("the array has no rows; send at least one row")
    matrix = np.ascontiguousarray(array, dtype=np.float64)
    _check_finite(matrix, names)
    return matrix


def _number(value: Any, *, where: str) -> float:
    if type(value) not in _NUMBER_TYPES:
        raise InvalidInput(f"{where} must be a number, got {_describe(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidInput(f"{where} is too large for a 64-bit float") from None
    if not math.isfinite(number):
        raise InvalidInput(f"{where} must be a finite number, got {number}")
    return number


def _check_finite(matrix: npt.NDArray[np.float64], names: Sequence[str]) -> None:
    finite = np.isfinite(matrix)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise InvalidInput(
            f"row {row}, feature '{names[col]}' must be a finite number, got {matrix[row, col]}"
        )


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "boolean", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )
    text = repr(value)
    return f"{kind} {text[:40]}{'...' if len(text) > 40 else ''}"
