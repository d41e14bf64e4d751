"""The soak's mixed workload: the calls of the app's tabs and of retraining's feedback, by weight."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import numpy as np
from fruitstack.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    fruits_pb2,
    fruits_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    predictions_pb2,
    predictions_pb2_grpc,
)
from grpc import aio

from backend.prediction import wire
from scripts.traffic import RowSource

# Calls in every 100, in a fixed shuffled order: mostly predictions (the Predict tab and other
# services), then the Fruits tab, feedback on earlier predictions, and the Model and Monitoring tabs.
WEIGHTS: dict[str, int] = {
    "Predict": 40,
    "ListFruits": 14,
    "AddFruit": 8,
    "DeleteFruit": 8,  # as many as AddFruit, so the collection keeps its size
    "RecordFeedback": 8,
    "SummarizeFruits": 6,
    "GetModel": 6,
    "GetDriftReport": 5,
    "PredictBatch": 5,
}
BATCH_ROWS = 50
FRUITS = ("apple", "banana", "cherry", "kiwi", "mango", "pear", "plum")
# Fruits there before the first call: enough that no DeleteFruit finds none while AddFruits are
# on their way, and that ListFruits and SummarizeFruits have something to read.
SEED_FRUITS = 200
TIMEOUT_S = 10.0

Metadata = tuple[tuple[str, str], ...]


class WrongAnswer(Exception):
    """A call answered OK with something it should not have (counted as an error)."""


class Starved(Exception):
    """A call the mix could not make because earlier ones failed (no fruit left to delete)."""


class SignIn:
    """The soak's admin, signed in through AuthService/Login and again halfway through each token's
    lifetime, in the background, so that a soak longer than a token (30 minutes) keeps going."""

    def __init__(self, channel: aio.Channel, username: str, password: str) -> None:
        self._auth = auth_pb2_grpc.AuthServiceStub(channel)
        self._request = auth_pb2.LoginRequest(username=username, password=password)
        self.metadata: Metadata = ()
        self._renewing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SignIn:
        renew_in = await self._login()
        self._renewing = asyncio.create_task(self._renew(renew_in))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing

    async def _login(self) -> float:
        """Sign in; seconds until the new token is halfway to expiry."""
        answer = await self._auth.Login(self._request, timeout=TIMEOUT_S)
        self.metadata = (("authorization", f"Bearer {answer.access_token}"),)
        left = (answer.expires_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
        return max(1.0, left / 2)

    async def _renew(self, first_in: float) -> None:
        wait = first_in
        while True:
            await asyncio.sleep(wait)
            wait = await self._login()


class Mix:
    """Call i of a run is `op(i)`; `call(i)` sends it. State between calls (fruits to delete,
    predictions to give feedback on) is kept here, so every call is one a real client could send."""

    def __init__(
        self, channel: aio.Channel, sign_in: SignIn, model: predictions_pb2.Model, *, seed: int
    ) -> None:
        self._sign_in = sign_in
        self._fruits = fruits_pb2_grpc.FruitServiceStub(channel)
        self._predictions = predictions_pb2_grpc.PredictionServiceStub(channel)
        self._monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        self._classes = set(model.classes)
        # Rows like the training data, so the drift checks stay quiet as they would in service.
        self._rows = RowSource(model, shift={}, seed=seed)
        self._fruit_ids: deque[str] = deque()
        self._predicted: deque[tuple[str, str]] = deque(maxlen=1000)  # (prediction id, true label)
        self.order = [op for op, weight in WEIGHTS.items() for _ in range(weight)]
        random.Random(seed).shuffle(self.order)
        self._calls: dict[str, Callable[[], Awaitable[None]]] = {
            "Predict": self.predict,
            "ListFruits": self.list_fruits,
            "AddFruit": self.add_fruit,
            "DeleteFruit": self.delete_fruit,
            "RecordFeedback": self.record_feedback,
            "SummarizeFruits": self.summarize_fruits,
            "GetModel": self.get_model,
            "GetDriftReport": self.get_drift_report,
            "PredictBatch": self.predict_batch,
        }
        self._names = random.Random(seed + 1)

    def op(self, i: int) -> str:
        return self.order[i % len(self.order)]

    async def call(self, i: int) -> None:
        await self._calls[self.op(i)]()

    async def prepare(self) -> None:
        """The fruits DeleteFruit takes from, and predictions for the first RecordFeedbacks."""
        for _ in range(SEED_FRUITS):
            await self.add_fruit()
        for _ in range(20):
            await self.predict()

    async def predict(self) -> None:
        features, truth = self._rows.draw()
        answer = await self._predictions.Predict(
            predictions_pb2.PredictRequest(features=features),
            timeout=TIMEOUT_S,
            metadata=self._sign_in.metadata,
        )
        if answer.label not in self._classes or not answer.prediction_id:
            raise WrongAnswer(f"Predict answered label {answer.label!r}, id {answer.prediction_id!r}")
        self._predicted.append((answer.prediction_id, truth))

    async def predict_batch(self) -> None:
        rows = [self._rows.draw()[0] for _ in range(BATCH_ROWS)]
        request = wire.bulk_request({name: np.asarray([r[name] for r in rows]) for name in rows[0]})
        scored = 0
        async for answer in self._predictions.PredictBatch(
            iter([request]), timeout=TIMEOUT_S, metadata=self._sign_in.metadata
        ):
            scored += len(answer.label_indices)
        if scored != BATCH_ROWS:
            raise WrongAnswer(f"PredictBatch scored {scored} of {BATCH_ROWS} rows")

    async def record_feedback(self) -> None:
        if not self._predicted:  # only if feedback outran every prediction so far
            await self.predict()
        prediction_id, truth = self._predicted.popleft()
        await self._monitoring.RecordFeedback(
            monitoring_pb2.RecordFeedbackRequest(prediction_id=prediction_id, label=truth),
            timeout=TIMEOUT_S,
            metadata=self._sign_in.metadata,
        )

    async def add_fruit(self) -> None:
        answer = await self._fruits.AddFruit(
            fruits_pb2.AddFruitRequest(name=self._names.choice(FRUITS)),
            timeout=TIMEOUT_S,
            metadata=self._sign_in.metadata,
        )
        self._fruit_ids.append(answer.fruit.id)

    async def delete_fruit(self) -> None:
        if not self._fruit_ids:
            raise Starved("no fruit left to delete: AddFruit failed or fell far behind")
        await self._fruits.DeleteFruit(
            fruits_pb2.DeleteFruitRequest(id=self._fruit_ids.popleft()),
            timeout=TIMEOUT_S,
            metadata=self._sign_in.metadata,
        )

    async def list_fruits(self) -> None:
        answer = await self._fruits.ListFruits(
            fruits_pb2.ListFruitsRequest(page_size=20), timeout=TIMEOUT_S, metadata=self._sign_in.metadata
        )
        if not answer.fruits:
            raise WrongAnswer("ListFruits answered no fruits")

    async def summarize_fruits(self) -> None:
        await self._fruits.SummarizeFruits(
            fruits_pb2.SummarizeFruitsRequest(), timeout=TIMEOUT_S, metadata=self._sign_in.metadata
        )

    async def get_model(self) -> None:
        await self._predictions.GetModel(
            predictions_pb2.GetModelRequest(), timeout=TIMEOUT_S, metadata=self._sign_in.metadata
        )

    async def get_drift_report(self) -> None:
        await self._monitoring.GetDriftReport(
            monitoring_pb2.GetDriftReportRequest(), timeout=TIMEOUT_S, metadata=self._sign_in.metadata
        )

    async def prediction_log(self) -> monitoring_pb2.GetMonitoringStatusResponse:
        """How many predictions the backend logged and dropped (not part of the mix)."""
        return await self._monitoring.GetMonitoringStatus(
            monitoring_pb2.GetMonitoringStatusRequest(), timeout=TIMEOUT_S, metadata=self._sign_in.metadata
        )
