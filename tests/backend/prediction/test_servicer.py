"""PredictionService through a real gRPC server and a real `bentoml serve` (shared, read-only use)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
import joblib
import numpy as np
import pytest
from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from grpc import aio

from backend.auth.roles import Role
from backend.prediction import wire
from tests.fixtures.backend import RunningBackend, bearer_interceptors, mint_token
from tests.fixtures.model_service import ModelService

# The async stub type exists only in the typed stubs (.pyi), hence a string.
Stub: TypeAlias = "predictions_pb2_grpc.PredictionServiceAsyncStub"


@pytest.fixture
def stub(backend_with_model: RunningBackend) -> Stub:
    return predictions_pb2_grpc.PredictionServiceStub(backend_with_model.channel)


@pytest.fixture(scope="module")
def pipeline(model_service: ModelService) -> Any:
    """The served model called in-process: the reference every answer is compared with."""
    return joblib.load(model_service.artifact)


async def get_model(stub: Stub) -> predictions_pb2.Model:
    return (await stub.GetModel(predictions_pb2.GetModelRequest(), timeout=10)).model


def random_rows(model: predictions_pb2.Model, n: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float64]]:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(f.min, f.max, n) for f in model.features])


async def test_get_model_describes_the_served_model(stub: Stub, pipeline: Any) -> None:
    model = await get_model(stub)
    assert model.name == "fruitstack-classifier"
    assert model.version
    assert model.dataset == "iris"
    assert [f.name for f in model.features] == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    assert all(f.min <= f.mean <= f.max for f in model.features)
    assert list(model.classes) == [str(c) for c in pipeline.classes_]
    assert model.metrics["accuracy"] >= 0.9
    assert model.trained_at.seconds > 0
    sample = model.training_sample
    assert [c.name for c in sample.columns] == [f.name for f in model.features]
    assert all(len(c.values) == len(sample.labels) > 0 for c in sample.columns)


async def test_predict_equals_the_model_in_process(stub: Stub, pipeline: Any) -> None:
    model = await get_model(stub)
    x = random_rows(model, 40)
    names = [f.name for f in model.features]
    answers = await asyncio.gather(
        *(
            stub.Predict(predictions_pb2.PredictRequest(features=dict(zip(names, row, strict=True))))
            for row in x
        )
    )
    expected = pipeline.predict_proba(x)
    for answer, probabilities in zip(answers, expected, strict=True):
        assert answer.model_version == model.version
        assert answer.label == str(pipeline.classes_[probabilities.argmax()])
        got = [answer.probabilities[c] for c in model.classes]
        np.testing.assert_allclose(got, probabilities, rtol=1e-12)


async def test_many_concurrent_predicts_are_all_answered_correctly(stub: Stub, pipeline: Any) -> None:
    model = await get_model(stub)
    x = random_rows(model, 500, seed=3)
    names = [f.name for f in model.features]
    answers = await asyncio.gather(
        *(
            stub.Predict(predictions_pb2.PredictRequest(features=dict(zip(names, row, strict=True))))
            for row in x
        )
    )
    labels = [a.label for a in answers]
    assert labels == [str(c) for c in pipeline.predict(x)]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda f: f.pop("petal_width_cm"), ["missing", "petal_width_cm"]),
        (lambda f: f.update(stem_length_cm=1.0), ["unknown", "stem_length_cm"]),
        (lambda f: f.update(sepal_length_cm=math.nan), ["sepal_length_cm", "finite"]),
        (lambda f: f.update(petal_length_cm=math.inf), ["petal_length_cm", "finite"]),
        (lambda f: f.clear(), ["missing", "sepal_length_cm"]),
    ],
    ids=["missing", "unknown", "nan", "inf", "empty"],
)
async def test_bad_features_are_invalid_argument_naming_the_feature(
    stub: Stub, change: Any, words: list[str]
) -> None:
    model = await get_model(stub)
    features = {f.name: f.mean for f in model.features}
    change(features)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Predict(predictions_pb2.PredictRequest(features=features), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in (caught.value.details() or "")


async def test_predict_bulk_of_50k_rows_in_chunks_equals_the_model_in_process(
    stub: Stub, pipeline: Any
) -> None:
    model = await get_model(stub)
    x = random_rows(model, 50_000, seed=7)
    names = [f.name for f in model.features]
    chunk = 12_000  # not a divisor: the last chunk is short

    async def requests() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
        for start in range(0, len(x), chunk):
            # Columns in reverse order: the server must match them by name, not position.
            part = x[start : start + chunk]
            yield wire.bulk_request({n: part[:, j] for j, n in reversed(list(enumerate(names)))})

    answers = [a async for a in stub.PredictBatch(requests(), timeout=60)]
    assert [a.row_offset for a in answers] == list(range(0, len(x), chunk))
    assert all(a.model_version == model.version and list(a.classes) == list(model.classes) for a in answers)
    labels = np.concatenate([np.asarray(a.label_indices) for a in answers])
    probabilities = np.vstack([np.column_stack([wire.array(c) for c in a.probabilities]) for a in answers])
    assert [c.name for c in answers[0].probabilities] == list(model.classes)
    expected = pipeline.predict_proba(x)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-12)
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))


@pytest.mark.parametrize(
    ("columns_of", "words"),
    [
        (lambda x, names: {n: x[:, j] for j, n in enumerate(names[:-1])}, ["missing", "petal_width_cm"]),
        (lambda x, names: {n: x[: 5 + j, j] for j, n in enumerate(names)}, ["same number of rows"]),
        (
            lambda x, names: {
                n: np.where(np.arange(len(x)) == 3, np.nan, x[:, j]) for j, n in enumerate(names)
            },
            ["finite", "row 3"],
        ),
    ],
    ids=["missing-column", "ragged", "nan"],
)
async def test_bad_bulk_chunks_are_invalid_argument(stub: Stub, columns_of: Any, words: list[str]) -> None:
    model = await get_model(stub)
    names = [f.name for f in model.features]
    request = wire.bulk_request(columns_of(random_rows(model, 10), names))

    async def requests() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
        yield request

    with pytest.raises(aio.AioRpcError) as caught:
        _ = [a async for a in stub.PredictBatch(requests(), timeout=30)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for word in words:
        assert word in (caught.value.details() or "")


async def test_a_duplicated_column_is_invalid_argument(stub: Stub) -> None:
    model = await get_model(stub)
    request = predictions_pb2.PredictBatchRequest(
        columns=[
            predictions_pb2.Column(name=f.name, values=[f.mean]) for f in [*model.features, model.features[0]]
        ]
    )

    async def requests() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
        yield request

    with pytest.raises(aio.AioRpcError) as caught:
        _ = [a async for a in stub.PredictBatch(requests(), timeout=30)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert model.features[0].name in (caught.value.details() or "")


async def test_health_reports_prediction_service_serving(backend_with_model: RunningBackend) -> None:
    assert await backend_with_model.status("fruitstack.v1.PredictionService") == "SERVING"


async def test_predict_bulk_takes_chunks_above_grpcs_default_4mb_limit(
    backend_with_model: RunningBackend, pipeline: Any
) -> None:
    big = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    viewer = bearer_interceptors(mint_token(Role.VIEWER))
    async with aio.insecure_channel(backend_with_model.target, options=big, interceptors=viewer) as channel:
        stub: Stub = predictions_pb2_grpc.PredictionServiceStub(channel)
        model = await get_model(stub)
        x = random_rows(model, 200_000, seed=11)  # 6.4 MB of features in, 4.8 MB of probabilities out

        async def requests() -> AsyncIterator[predictions_pb2.PredictBatchRequest]:
            yield wire.bulk_request({f.name: x[:, j] for j, f in enumerate(model.features)})

        answers = [a async for a in stub.PredictBatch(requests(), timeout=60)]
    assert len(answers) == 1
    np.testing.assert_array_equal(
        np.asarray(answers[0].label_indices), pipeline.predict_proba(x).argmax(axis=1)
    )
