"""The fruitstack model service: predictions from the newest verified model in the BentoML store."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
import numpy.typing as npt
import orjson
from bentoml.validators import ContentType
from fruitstack_model.exceptions import InvalidInput
from fruitstack_model.inputs import matrix_from_npy, matrix_from_rows, row_from_features, unscorable_rows
from fruitstack_model.live_model import LiveModel, VersionMarker
from fruitstack_model.model_store import MODEL_NAME, LoadedModel, load_verified
from fruitstack_model.schemas import ModelInfo, NpyProbabilities, Prediction, Reload, RowPredictions
from fruitstack_model.settings import ServiceSettings
from starlette.responses import Response

VERSION_HEADER = "X-Model-Version"
# /predict_bulk: the position of the body's first row in the caller's stream, so messages name the
# row the caller knows (the backend sends chunks of one PredictBatch stream).
ROW_OFFSET_HEADER = "X-Row-Offset"
NPY_MEDIA_TYPE = "application/octet-stream"


def _json(payload: dict[str, Any], version: str) -> Response:
    # Pre-serialised with orjson (numpy arrays included): far cheaper than BentoML's pydantic path.
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, media_type="application/json", headers={VERSION_HEADER: version})


@bentoml.service(
    name="fruitstack-model",
    # One worker: on 2 cores a second one competes with the backend for CPU; reload works for N.
    workers=1,
    traffic={"timeout": 60},
    # No access log: on the small-prediction hot path a formatted log line per request is real
    # work; /metrics still counts requests and latencies.
    logging={"access": {"enabled": False}},
    # No OpenTelemetry span for the scoring calls: it was half the CPU of a small /predict_rows call
    # (1.6 -> 0.85 ms measured). Those calls are batches the backend coalesced from many callers, so a
    # span per batch would not describe any one user's request anyway; the other APIs keep theirs.
    tracing={"excluded_urls": ["/predict_rows", "/predict_bulk"]},
)
class FruitstackModel:
    """Scores rows with the model registered as `fruitstack-classifier` by train.py."""

    stored = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.settings = ServiceSettings()
        state_dir = self.settings.state_dir or _default_state_dir()
        self.live = LiveModel(
            load_verified(self.stored), marker=VersionMarker(state_dir / f"{MODEL_NAME}.serving")
        )

    @bentoml.api(output_spec=Prediction)  # type: ignore[untyped-decorator]
    async def predict(self, features: dict[str, Any]) -> Response:
        """One row as {feature: number} -> label, probability per class and the model version."""
        model = await self.live.current()
        row = row_from_features(features, model.feature_names)
        scored = model.predict_proba(row)
        if problems := unscorable_rows(row, scored, model.metadata["features"]):
            raise InvalidInput(problems[0])
        probabilities = scored[0]
        return _json(
            {
                "label": model.classes[int(probabilities.argmax())],
                "probabilities": dict(zip(model.classes, probabilities.tolist(), strict=True)),
                "model_version": model.version,
            },
            model.version,
        )

    @bentoml.api(output_spec=RowPredictions)  # type: ignore[untyped-decorator]
    async def predict_rows(self, rows: list[list[Any]]) -> Response:
        """Many rows, values in the model's feature order -> labels and probabilities per row.

        The rows are usually many callers' predictions coalesced by the backend, so a row that cannot
        be scored fails alone: it is listed in `errors` (its label "" and probabilities []).
        """
        model = await self.live.current()
        matrix = matrix_from_rows(rows, model.feature_names)
        probabilities = await self._score(model, matrix)
        errors = unscorable_rows(matrix, probabilities, model.metadata["features"])
        labels = model.labels(probabilities)
        scores: Any = probabilities
        if errors:
            scores = probabilities.tolist()
            for i in errors:
                labels[i], scores[i] = "", []
        return _json(
            {
                "model_version": model.version,
                "classes": model.classes,
                "labels": labels,
                "probabilities": scores,
                "errors": [{"row": i, "error": message} for i, message in errors.items()],
            },
            model.version,
        )

    @bentoml.api(output_spec=NpyProbabilities)  # type: ignore[untyped-decorator]
    async def predict_bulk(
        self, body: Annotated[bytes, ContentType(NPY_MEDIA_TYPE)], /, ctx: bentoml.Context
    ) -> Response:
        """An .npy float64 (n_rows, n_features) array -> an .npy float64 (n_rows, n_classes) array.

        Binary both ways: a million rows are 32 MB of .npy but several times that as JSON, and
        parse in milliseconds instead of seconds. One caller's rows: any row that cannot be scored
        refuses the request (400), naming it counted from the `X-Row-Offset` header.
        """
        model = await self.live.current()
        offset = _row_offset(ctx)
        matrix = matrix_from_npy(body, model.feature_names, row_offset=offset)
        probabilities = await self._score(model, matrix)
        if problems := unscorable_rows(matrix, probabilities, model.metadata["features"]):
            first, message = next(iter(problems.items()))
            more = f" ({len(problems) - 1} more rows cannot be scored either)" if len(problems) > 1 else ""
            raise InvalidInput(f"row {first + offset}: {message}{more}")
        out = io.BytesIO()
        np.save(out, probabilities, allow_pickle=False)
        return Response(out.getvalue(), media_type=NPY_MEDIA_TYPE, headers={VERSION_HEADER: model.version})

    @bentoml.api(output_spec=ModelInfo)  # type: ignore[untyped-decorator]
    async def model(self) -> Response:
        """The served model's schema, metrics, training sample and provenance."""
        model = await self.live.current()
        return Response(
            model.info_json, media_type="application/json", headers={VERSION_HEADER: model.version}
        )

    @bentoml.api(output_spec=Reload)  # type: ignore[untyped-decorator]
    async def reload(self) -> Response:
        """Switch every worker to the newest registered model without a restart."""
        previous, current = await self.live.reload()
        return _json({"previous_version": previous, "current_version": current}, current)

    async def _score(self, model: LoadedModel, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if len(rows) >= self.settings.thread_rows:
            return await asyncio.to_thread(model.predict_proba, rows)
        return model.predict_proba(rows)


def _row_offset(ctx: bentoml.Context) -> int:
    raw = ctx.request.headers.get(ROW_OFFSET_HEADER, "0")
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"the {ROW_OFFSET_HEADER} header must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


def _default_state_dir() -> Path:
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")) / "fruitstack"
