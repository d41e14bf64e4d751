"""Columnar protobuf messages <-> NumPy arrays, fast enough for a million rows.

Filling `repeated double` from Python floats costs ~80 ms per million values
(`values.extend(arr.tolist())`), while parsing the same values from their wire bytes costs ~4 ms
(measured, upb protobuf). So messages carrying big arrays are assembled as protobuf wire bytes
(packed fields are plain little-endian arrays) and parsed once. Reading is already fast:
`np.asarray(column.values)` copies through the buffer protocol (~1 ms per million).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from fruitstack.v1 import predictions_pb2
from google.protobuf.message import Message


def _tag(message: type[Message], field: str) -> bytes:
    """The wire tag of a field, read from the generated descriptor so it can never drift from the .proto.

    A tag is (field number << 3) | wire type: 2 (length-delimited) for strings, messages and packed
    repeated numbers; 0 (varint) for a single integer.
    """
    descriptor = message.DESCRIPTOR.fields_by_name[field]
    if descriptor.is_repeated and descriptor.type not in (descriptor.TYPE_STRING, descriptor.TYPE_MESSAGE):
        assert descriptor.is_packed, f"{message.__name__}.{field} is written as one packed field"
    length_delimited = descriptor.is_repeated or descriptor.type in (
        descriptor.TYPE_STRING,
        descriptor.TYPE_MESSAGE,
    )
    if not length_delimited:
        assert descriptor.type in (descriptor.TYPE_INT32, descriptor.TYPE_INT64), "only varints are singular"
    key = descriptor.number << 3 | (2 if length_delimited else 0)
    assert key < 0x80, f"{message.__name__}.{field}: multi-byte tags are not needed here"
    return bytes([key])


_COLUMN_NAME = _tag(predictions_pb2.Column, "name")
_COLUMN_VALUES = _tag(predictions_pb2.Column, "values")
_BULK_REQUEST_COLUMNS = _tag(predictions_pb2.PredictBatchRequest, "columns")
_RESPONSE_VERSION = _tag(predictions_pb2.PredictBatchResponse, "model_version")
_RESPONSE_CLASSES = _tag(predictions_pb2.PredictBatchResponse, "classes")
_RESPONSE_LABELS = _tag(predictions_pb2.PredictBatchResponse, "label_indices")
_RESPONSE_PROBABILITIES = _tag(predictions_pb2.PredictBatchResponse, "probabilities")
_RESPONSE_ROW_OFFSET = _tag(predictions_pb2.PredictBatchResponse, "row_offset")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _column_bytes(name: str, values: npt.ArrayLike) -> bytes:
    raw = np.ascontiguousarray(values, dtype="<f8").tobytes()
    return _field(_COLUMN_NAME, name.encode()) + _field(_COLUMN_VALUES, raw)


def array(column: predictions_pb2.Column) -> npt.NDArray[np.float64]:
    """The values of a Column as a float64 array."""
    return np.asarray(column.values, dtype=np.float64)


def column(name: str, values: npt.ArrayLike) -> predictions_pb2.Column:
    """A Column holding values (anything NumPy turns into float64)."""
    return predictions_pb2.Column.FromString(_column_bytes(name, values))


def bulk_request(columns: Mapping[str, npt.ArrayLike]) -> predictions_pb2.PredictBatchRequest:
    """A PredictBatchRequest with one Column per named array (for clients: tests, the benchmark)."""
    data = b"".join(_field(_BULK_REQUEST_COLUMNS, _column_bytes(n, v)) for n, v in columns.items())
    return predictions_pb2.PredictBatchRequest.FromString(data)


def bulk_response(
    *,
    model_version: str,
    classes: Sequence[str],
    label_indices: npt.NDArray[np.integer],
    probabilities: npt.NDArray[np.float64],
    row_offset: int,
) -> predictions_pb2.PredictBatchResponse:
    """A PredictBatchResponse; probabilities is (n_rows, n_classes), one Column per class."""
    parts = [_field(_RESPONSE_VERSION, model_version.encode())]
    parts += [_field(_RESPONSE_CLASSES, c.encode()) for c in classes]
    if len(classes) <= 0x80 and len(label_indices):
        # Indices below 128 are one-byte varints, so the packed field is just those bytes.
        parts.append(_field(_RESPONSE_LABELS, np.asarray(label_indices, dtype=np.uint8).tobytes()))
    parts += [
        _field(_RESPONSE_PROBABILITIES, _column_bytes(c, probabilities[:, j])) for j, c in enumerate(classes)
    ]
    if row_offset:
        parts.append(_RESPONSE_ROW_OFFSET + _varint(row_offset))
    message = predictions_pb2.PredictBatchResponse.FromString(b"".join(parts))
    if len(classes) > 0x80:
        message.label_indices.extend(np.asarray(label_indices).tolist())
    return message
