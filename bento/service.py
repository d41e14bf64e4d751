"""The fruitstack model service: predictions from the champion of the MLflow model registry, verified."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
import numpy.typing as npt
import orjson
from bentoml.validators import ContentType
from fruitstack_model.exceptions import InvalidInput, ModelServiceError, error_response
from fruitstack_model.inputs import matrix_from_npy, matrix_from_rows, row_from_features, unscorable_rows
from fruitstack_model.live_model import LiveModel, ModelSource, VersionMarker
from fruitstack_model.model_store import METADATA_KEYS, LoadedModel, ModelCache, require_version
from fruitstack_model.registry import CHAMPION, Registry, VersionRecord, configure_http
from fruitstack_model.schemas import (
    ModelInfo,
    NpyProbabilities,
    Prediction,
    Reload,
    RowPredictions,
    Unpin,
    Versions,
)
from fruitstack_model.settings import ServiceSettings
from starlette.responses import Response

logger = logging.getLogger(__name__)

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
    """Scores rows with the champion of the registered model `fruitstack-classifier`.

    No class-scope `bentoml.models.BentoModel`: that would pin one version into the bento at
    `bentoml build` time, while the version to serve is decided in the registry at run time (the
    BentoML store is only this service's cache of downloaded versions).
    """

    def __init__(self) -> None:
        self.settings = ServiceSettings()
        configure_http(timeout_s=self.settings.registry_timeout_s, retries=0)
        registry = Registry(self.settings.tracking_uri, self.settings.registered_model)
        state_dir = self.settings.state_dir or _default_state_dir()
        self.source = ModelSource(registry, ModelCache(lock_dir=state_dir))
        marker = VersionMarker(state_dir / f"{registry.name}.serving")
        self.live = LiveModel.start(self.source, marker=marker)
        self._polling: asyncio.Task[None] | None = None
        self._version_facts: dict[str, dict[str, Any]] = {}  # /version_info, by version

    @bentoml.on_startup  # type: ignore[untyped-decorator]
    async def _start_polling(self) -> None:
        # A task of this worker's event loop, which exists only once the server runs (not in __init__).
        if self.settings.poll_interval_s > 0:
            self._polling = asyncio.create_task(self.live.poll(self.settings.poll_interval_s))

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]
    async def _stop_polling(self) -> None:
        if self._polling is not None:
            self._polling.cancel()

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
        """The served version: schema, metrics, training sample, provenance, and the registry's state."""
        return self._model_response(await self.live.current())

    def _model_response(self, model: LoadedModel) -> Response:
        info = {**model.info(), "aliases": list(self.live.aliases), "registry": self.live.status.as_dict()}
        return _json(info, model.version)

    @bentoml.api(output_spec=ModelInfo)  # type: ignore[untyped-decorator]
    async def version_info(self, version: str = "") -> Response:
        """What /model answers, for any registered version and without serving it (version empty: the
        served one). The backend's drift report for an earlier version needs its training summary."""
        model = await self.live.current()
        if not version:
            return self._model_response(model)
        try:
            version = require_version(version)
            if version == model.version:
                return self._model_response(model)
            info = await asyncio.to_thread(self._version_info, version)
        except ModelServiceError as exc:
            return error_response(exc)
        return _json(info, model.version)

    @bentoml.api(output_spec=Reload)  # type: ignore[untyped-decorator]
    async def reload(self, version: str = "", by: str = "") -> Response:
        """Serve the champion in every worker (version empty), or roll back: make `version` the
        champion (recorded as a manual decision by `by`, and pinned) and serve it."""
        try:
            previous, current = await self.live.reload(version or None, by=_who(by))
        except ModelServiceError as exc:
            return error_response(exc)
        return _json({"previous_version": previous, "current_version": current}, current)

    @bentoml.api(output_spec=Unpin)  # type: ignore[untyped-decorator]
    async def unpin(self, by: str = "") -> Response:
        """Lift the pin a rollback put on the champion: the gate may promote again from the next run."""
        model = await self.live.current()
        try:
            unpinned = await asyncio.to_thread(self._unpin, _who(by))
        except ModelServiceError as exc:
            return error_response(exc)
        return _json({"unpinned_version": unpinned}, model.version)

    def _unpin(self, by: str) -> str | None:
        registry = self.source.registry
        pin = registry.pin()
        if pin is None:
            return None
        registry.clear_pin()
        logger.info("unpinned v%s (pinned by %s at %s) at the request of %s", pin.version, pin.by, pin.at, by)
        return pin.version

    @bentoml.api(output_spec=Versions)  # type: ignore[untyped-decorator]
    async def versions(self) -> Response:
        """Every registered version, newest first: run, metrics, aliases, created, the gate's decision."""
        model = await self.live.current()
        try:
            body = await asyncio.to_thread(self._versions, model.version)
        except ModelServiceError as exc:
            return error_response(exc)
        return _json(body, model.version)

    def _version_info(self, version: str) -> dict[str, Any]:
        facts = self._version_facts.get(version)
        if facts is None:  # what a version was trained on never changes, so it is fetched once
            record, info = self.source.registry.fetch_info(version)
            facts = self._version_facts[version] = {
                "name": record.name,
                "version": record.version,
                "run_id": record.run_id,
                **{key: info[key] for key in METADATA_KEYS},
                "reference": info.get("reference"),
                "sha256": record.sha256 or "",
            }
        # Aliases move; /versions has them. The registry state is this worker's, as in /model.
        return {**facts, "aliases": [], "registry": self.live.status.as_dict()}

    def _versions(self, served: str) -> dict[str, Any]:
        registry = self.source.registry
        records = registry.versions()
        pin = registry.pin()
        return {
            "name": registry.name,
            "served_version": served,
            "champion": next((r.version for r in records if CHAMPION in r.aliases), None),
            "pin": None
            if pin is None
            else {"version": pin.version, "by": pin.by, "at": pin.at, "reason": pin.reason},
            "versions": [
                _version_json(r, registry.run_metrics(r.run_id) if r.run_id else {}) for r in records
            ],
        }

    async def _score(self, model: LoadedModel, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if len(rows) >= self.settings.thread_rows:
            return await asyncio.to_thread(model.predict_proba, rows)
        return model.predict_proba(rows)


def _row_offset(ctx: bentoml.Context) -> int:
    raw = ctx.request.headers.get(ROW_OFFSET_HEADER, "0")
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidInput(f"the {ROW_OFFSET_HEADER} header must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


def _version_json(record: VersionRecord, metrics: dict[str, float]) -> dict[str, Any]:
    gate = record.gate
    return {
        "version": record.version,
        "run_id": record.run_id,
        "created_at": record.created_at,
        "aliases": list(record.aliases),
        "metrics": metrics,
        "sha256": record.sha256,
        "gate": {
            "decision": gate.get("decision"),
            "metric": gate.get("metric"),
            "margin": _number(gate.get("margin")),
            "candidate_score": _number(gate.get("candidate_score")),
            "champion_score": _number(gate.get("champion_score")),
            "champion_version": gate.get("champion_version") or None,
            "reason": gate.get("reason"),
            "decided_at": gate.get("decided_at"),
            "pinned_version": gate.get("pinned_version") or None,
        },
    }


def _who(by: str) -> str:
    """Who asked, as the backend says (the signed-in admin): printable, bounded, for the record."""
    name = "".join(c for c in by if c.isprintable())[:64].strip()
    return name or "an admin"


def _number(tag: str | None) -> float | None:
    """Tags are strings; the gate wrote scores with repr(), and "" for no score."""
    try:
        return float(tag) if tag else None
    except ValueError:
        return None


def _default_state_dir() -> Path:
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")) / "fruitstack"
