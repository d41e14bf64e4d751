"""The model service's documented answers (fruitstack_model/schemas.py) against what it really sends.

The APIs answer pre-serialised bytes for speed, so nothing at run time ties them to the schemas on
the OpenAPI page, nor to the backend's parser. Here every JSON answer of a real `bentoml serve` is
validated against its documented model (which forbids undocumented keys), and read by the backend's
own client, so the docs, the service and the backend cannot drift apart silently.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fruitstack_model import schemas
from pydantic import BaseModel

from backend.prediction import ModelClient, ModelInfo
from tests.fixtures.model_service import ModelService, StartModelService

ROW = [5.9, 3.0, 5.1, 1.8]


@pytest.fixture(scope="module")
def private_model_service(model_service_factory: StartModelService) -> Iterator[ModelService]:
    """One service of this module's own: the contract includes /reload, which the shared one must
    never see. A reload to the champion it already serves changes nothing, so the tests share it."""
    service = model_service_factory()
    yield service
    service.stop()


@pytest.fixture
def http(private_model_service: ModelService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=private_model_service.url, timeout=30) as client:
        yield client


def documented(model: type[BaseModel], response: httpx.Response) -> BaseModel:
    assert response.status_code == 200, response.text
    return model.model_validate_json(response.content)


def test_every_json_answer_is_exactly_its_documented_schema(http: httpx.Client) -> None:
    info = documented(schemas.ModelInfo, http.post("/model", json={}))
    assert isinstance(info, schemas.ModelInfo)
    features = {f.name: f.mean for f in info.features}
    documented(schemas.Prediction, http.post("/predict", json={"features": features}))
    documented(schemas.RowPredictions, http.post("/predict_rows", json={"rows": [ROW, ROW]}))
    documented(schemas.Reload, http.post("/reload", json={}))
    documented(schemas.Versions, http.post("/versions", json={}))
    documented(schemas.Unpin, http.post("/unpin", json={}))  # nothing pinned: changes nothing


def test_a_documented_schema_refuses_an_undocumented_key() -> None:
    """The check above could not fail if the schemas let unknown keys through."""
    body = {"previous_version": "a", "current_version": "b", "surprise": 1}
    with pytest.raises(ValueError, match="surprise"):
        schemas.Reload.model_validate(body)


def test_bulk_answer_is_an_npy_float64_matrix_with_the_version_header(
    http: httpx.Client, private_model_service: ModelService
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray([ROW] * 3))
    response = http.post(
        "/predict_bulk", content=buffer.getvalue(), headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    probabilities = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert probabilities.dtype == np.float64
    assert probabilities.shape == (3, 3)
    assert response.headers["X-Model-Version"] == private_model_service.version


async def test_the_backends_client_reads_every_answer(private_model_service: ModelService) -> None:
    client = ModelClient(private_model_service.url, default_timeout=30)
    try:
        info = ModelInfo.from_json(await client.model())
        assert info.version == private_model_service.version
        assert info.feature_names
        assert info.classes
        assert info.sample_columns
        rows = await client.predict_rows([ROW], time_left=30)
        assert rows.model_version == info.version
        assert len(rows.labels) == len(rows.probabilities) == 1
        assert list(rows.classes) == list(info.classes)
        bulk = await client.predict_bulk(np.asarray([ROW]), time_left=30)
        assert bulk.model_version == info.version
        assert bulk.probabilities.shape == (1, len(info.classes))
        reload = await client.reload(time_left=60)
        assert reload["current_version"] == info.version
    finally:
        await client.close()
