"""Columnar protobuf helpers: what they build must equal what protobuf builds the slow way."""

from __future__ import annotations

import numpy as np
from fruitstack.v1 import predictions_pb2

from backend.prediction import wire


def test_column_round_trips_through_numpy() -> None:
    values = np.random.default_rng(0).normal(size=1000)
    values[:3] = [np.inf, -0.0, 1e-300]
    message = wire.column("x", values)
    slow = predictions_pb2.Column(name="x", values=values.tolist())
    assert message == slow
    np.testing.assert_array_equal(wire.array(message), values)


def test_bulk_request_equals_protobuf_built_message() -> None:
    data = {"a": np.arange(5.0), "é": np.linspace(0, 1, 5)}
    expected = predictions_pb2.PredictBatchRequest(
        columns=[predictions_pb2.Column(name=k, values=v.tolist()) for k, v in data.items()]
    )
    assert wire.bulk_request(data) == expected


def test_bulk_response_equals_protobuf_built_message() -> None:
    probabilities = np.random.default_rng(1).dirichlet(np.ones(3), size=200)
    labels = probabilities.argmax(axis=1)
    built = wire.bulk_response(
        model_version="v1",
        classes=["a", "b", "c"],
        label_indices=labels,
        probabilities=probabilities,
        row_offset=300_000,
    )
    expected = predictions_pb2.PredictBatchResponse(
        model_version="v1",
        classes=["a", "b", "c"],
        label_indices=labels.tolist(),
        probabilities=[
            predictions_pb2.Column(name=c, values=probabilities[:, j].tolist()) for j, c in enumerate("abc")
        ],
        row_offset=300_000,
    )
    assert built == expected


def test_bulk_response_with_more_than_128_classes() -> None:
    classes = [f"c{i}" for i in range(300)]
    probabilities = np.eye(300)[[299, 0, 150]]
    built = wire.bulk_response(
        model_version="v",
        classes=classes,
        label_indices=probabilities.argmax(axis=1),
        probabilities=probabilities,
        row_offset=0,
    )
    assert list(built.label_indices) == [299, 0, 150]
