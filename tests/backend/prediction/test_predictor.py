"""Predictor logic with a fake model client (isolated unit tests; the real thing is in test_predictions*)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from backend.prediction import ModelClient, Predictor
from backend.prediction.model_client import BulkAnswer, RowsAnswer


def model_json(version: str, features: tuple[str, ...] = ("a", "b")) -> dict[str, Any]:
    return {
        "name": "m",
        "version": version,
        "features": [{"name": n, "min": 0, "max": 1, "mean": 0.5} for n in features],
        "classes": ["x", "y"],
    }


class FakeClient(ModelClient):
    """Serves `version`; counts /model reads; scores p(y) = first feature."""

    def __init__(self) -> None:
        super().__init__("http://fake", default_timeout=1)
        self.version = "v1"
        self.model_reads = 0

    async def model(self, *, time_left: float | None = None) -> dict[str, Any]:
        self.model_reads += 1
        await asyncio.sleep(0)
        return model_json(self.version)

    async def predict_rows(self, rows: list[list[float]], *, time_left: float | None = None) -> RowsAnswer:
        await asyncio.sleep(0)
        return RowsAnswer(
            model_version=self.version,
            classes=["x", "y"],
            labels=["y" if r[0] > 0.5 else "x" for r in rows],
            probabilities=[[1 - r[0], r[0]] for r in rows],
            errors={},
        )

    async def predict_bulk(
        self, x: Any, *, row_offset: int = 0, time_left: float | None = None
    ) -> BulkAnswer:
        return BulkAnswer(model_version=self.version, probabilities=np.column_stack([1 - x[:, 0], x[:, 0]]))


async def test_a_new_version_in_an_answer_refreshes_the_cached_schema_once() -> None:
    client = FakeClient()
    predictor = Predictor(client)
    assert (await predictor.predict({"a": 0.9, "b": 0.1})).label == "y"
    assert client.model_reads == 1
    client.version = "v2"  # the model service was reloaded behind the predictor's back
    answers = await asyncio.gather(*(predictor.predict({"a": 0.2, "b": 0.1}) for _ in range(20)))
    assert {a.model_version for a in answers} == {"v2"}
    assert client.model_reads == 2, "one refresh, however many callers saw the new version"
    await predictor.predict({"a": 0.2, "b": 0.1})
    assert client.model_reads == 2


async def test_predict_stream_answers_chunks_in_order() -> None:
    predictor = Predictor(FakeClient(), bulk_window=3)

    async def chunks() -> Any:
        for start in range(0, 100, 10):
            yield {"b": np.zeros(10), "a": np.arange(start, start + 10) / 100}

    results = [r async for r in predictor.predict_bulk(chunks())]
    probabilities = np.concatenate([r.probabilities[:, 1] for r in results])
    np.testing.assert_allclose(probabilities, np.arange(100) / 100)
