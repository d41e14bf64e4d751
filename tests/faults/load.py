"""Load during a fault: callers in threads, each sending one call after another with a deadline.

Every call is recorded (what, when it started, how long it took, its status, and for an
acknowledged AddFruit the fruit's id), so a fault's report can say what was sent, acknowledged,
failed by status and found afterwards, phase by phase.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from fruitstack.v1 import fruits_pb2, fruits_pb2_grpc, predictions_pb2, predictions_pb2_grpc

from tests.fixtures.stack import unique

ADD_FRUIT = "AddFruit"
PREDICT = "Predict"


@dataclass(frozen=True)
class Call:
    kind: str
    started: float  # time.monotonic()
    seconds: float
    code: str  # "OK" or the gRPC status name
    fruit_id: str = ""


@dataclass
class Load:
    """`writers` callers of AddFruit and `predictors` of Predict, until the block ends."""

    channel: grpc.Channel
    features: dict[str, float]
    deadline_s: float = 2.0
    writers: int = 2
    predictors: int = 2
    # Between one caller's calls: keeps the load steady without saturating two shared cores.
    pause_s: float = 0.02
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _caller(self, kind: str, send: Callable[[], str]) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                fruit_id, code = send(), "OK"
            except grpc.RpcError as exc:
                fruit_id, code = "", exc.code().name
            call = Call(kind, started, time.monotonic() - started, code, fruit_id)
            with self._lock:
                self.calls.append(call)
            time.sleep(self.pause_s)

    def _add_fruit(self) -> str:
        stub = fruits_pb2_grpc.FruitServiceStub(self.channel)
        request = fruits_pb2.AddFruitRequest(name=unique("fault"))
        return str(stub.AddFruit(request, timeout=self.deadline_s).fruit.id)

    def _predict(self) -> str:
        stub = predictions_pb2_grpc.PredictionServiceStub(self.channel)
        stub.Predict(predictions_pb2.PredictRequest(features=self.features), timeout=self.deadline_s)
        return ""

    @contextmanager
    def running(self) -> Iterator[Load]:
        """The callers, each in a thread, until the block ends."""
        callers = [(ADD_FRUIT, self._add_fruit)] * self.writers + [(PREDICT, self._predict)] * self.predictors
        threads = [
            threading.Thread(target=self._caller, args=(kind, send), name=f"{kind}-{index}", daemon=True)
            for index, (kind, send) in enumerate(callers)
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=self.deadline_s + 10)

    def since(self, moment: float, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind and c.started >= moment]

    def between(self, start: float, end: float, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind and start <= c.started < end]

    def acknowledged(self) -> set[str]:
        with self._lock:
            return {c.fruit_id for c in self.calls if c.kind == ADD_FRUIT and c.code == "OK"}


def codes(calls: list[Call]) -> Counter[str]:
    return Counter(c.code for c in calls)


def slowest(calls: list[Call]) -> float:
    return max((c.seconds for c in calls), default=0.0)


def first_success_after(load: Load, moment: float, kinds: tuple[str, ...], *, timeout: float) -> float:
    """Seconds from `moment` until a call of each kind, started after it, succeeded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [
            min((c.started + c.seconds for c in load.since(moment, k) if c.code == "OK"), default=None)
            for k in kinds
        ]
        if all(d is not None for d in done):
            return max(d for d in done if d is not None) - moment
        time.sleep(0.2)
    raise AssertionError(f"no successful {'/'.join(kinds)} within {timeout:.0f}s of the repair")


def iter_phases(
    inject_at: float, heal_at: float, recovered_at: float, end: float
) -> Iterator[tuple[str, float, float]]:
    yield "before", 0.0, inject_at
    yield "during", inject_at, heal_at
    yield "recovering", heal_at, recovered_at
    yield "after", recovered_at, end
