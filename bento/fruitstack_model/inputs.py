"""Turning request payloads into float64 matrices in the model's feature order, or InvalidInput.

Every message names the row and feature at fault, because the backend passes them on to users, and
is bounded however large the request: lists of names are cut after a few ("and N more"), and long
names and values are shortened, so an answer never outgrows a gRPC status (8 KB of metadata).
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
# How many names a message lists, and how many characters of one name or value it shows.
NAMES_LISTED = 5
CHARS_SHOWN = 40


def shorten(text: str, limit: int = CHARS_SHOWN) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def name_list(names: Sequence[str], limit: int = NAMES_LISTED, *, chars: int | None = CHARS_SHOWN) -> str:
    """'a, b, c' for a few names; 'a, b, c, d, e and 7 more' for many; each name shortened to chars."""
    shown = ", ".join(str(n) if chars is None else shorten(str(n), chars) for n in names[:limit])
    more = len(names) - limit
    return f"{shown} and {more} more" if more > 0 else shown


def row_from_features(features: Mapping[str, Any], names: Sequence[str]) -> npt.NDArray[np.float64]:
    """{name: number} for exactly the model's features -> a (1, n_features) matrix."""
    missing = [name for name in names if name not in features]
    known = set(names)
    unknown = [name for name in features if name not in known]
    problems = []
    if missing:
        problems.append(f"missing feature(s): {name_list(missing)}")
    if unknown:
        problems.append(f"unknown feature(s): {name_list(unknown)}")
    if problems:
        raise InvalidInput(f"{'; '.join(problems)} (the model expects: {name_list(names, limit=20)})")
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
                f"row {i} has {len(row)} values; the model expects {width} ({name_list(names, limit=20)})"
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


def matrix_from_npy(body: bytes, names: Sequence[str], *, row_offset: int = 0) -> npt.NDArray[np.float64]:
    """The bytes of an `np.save` file holding a real 2-D array -> (n_rows, n_features) float64.

    Messages number rows from row_offset: the position of the array's first row in the caller's stream.
    """
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
            f"with columns {name_list(names, limit=20)}"
        )
    if array.shape[0] == 0:
        raise InvalidInput("the array has no rows; send at least one row")
    matrix = np.ascontiguousarray(array, dtype=np.float64)
    _check_finite(matrix, names, row_offset=row_offset)
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


def _check_finite(matrix: npt.NDArray[np.float64], names: Sequence[str], *, row_offset: int = 0) -> None:
    finite = np.isfinite(matrix)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise InvalidInput(
            f"row {row + row_offset}, feature '{names[col]}' must be a finite number, got {matrix[row, col]}"
        )


def unscorable_rows(
    rows: npt.NDArray[np.float64],
    probabilities: npt.NDArray[np.float64],
    features: Sequence[Mapping[str, Any]],
) -> dict[int, str]:
    """The rows whose probabilities came out NaN or infinite, each with a message naming its features.

    Finite input can still overflow the model's arithmetic: 1e308 times a weight above 1 is inf, and
    inf - inf is NaN. Such a row is refused rather than answered with NaN. The message names the
    features astronomically far outside their training range (over a million range widths from the
    mean), or else the farthest one. `features` is the model's feature summary (name, min, max,
    mean), in column order.
    """
    bad = np.flatnonzero(~np.isfinite(probabilities).all(axis=1))
    if not len(bad):
        return {}
    mean = np.asarray([f["mean"] for f in features], dtype=np.float64)
    low = np.asarray([f["min"] for f in features], dtype=np.float64)
    high = np.asarray([f["max"] for f in features], dtype=np.float64)
    width = np.maximum(high - low, np.finfo(np.float64).tiny)
    messages = {}
    for i in bad.tolist():
        with np.errstate(over="ignore", invalid="ignore"):
            distance = np.nan_to_num(np.abs(rows[i] - mean) / width, nan=np.inf)
        far = np.flatnonzero(distance > 1e6).tolist() or [int(np.argmax(distance))]
        named = name_list(
            [
                f"'{features[j]['name']}' = {rows[i, j]:.6g} (trained on {features[j]['min']:.6g} to "
                f"{features[j]['max']:.6g})"
                for j in far
            ],
            limit=3,
            chars=None,  # the model's own feature names and numbers: bounded already
        )
        messages[i] = (
            f"the model's arithmetic overflows on feature(s) {named}: too far outside the training "
            "range to be scored"
        )
    return messages


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "boolean", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} {shorten(repr(value))}"
