"""`nox -s traffic -- ...`: predictions like the training data, optionally shifted, with feedback.

Rows are resampled from the training sample the backend describes (GetModel), with a little jitter,
so unshifted traffic looks like the training data to the drift tests; `--shift FEATURE=AMOUNT` adds
AMOUNT (in the feature's own units) to one feature, which the Monitoring tab then flags. With
`--feedback ERROR_RATE`, each prediction is followed by its row's true label, replaced by another
class with that probability, so live accuracy moves too. Examples, against `nox -s dev`:

    nox -s traffic -- --count 2000
    nox -s traffic -- --count 2000 --shift petal_length_cm=2.5
    nox -s traffic -- --duration 120 --rate 20 --feedback 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from fruitstack.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    predictions_pb2,
    predictions_pb2_grpc,
)
from grpc import aio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backend.config import PLACEHOLDER_ADMIN_PASSWORD

# Jitter around resampled rows, as a share of each feature's spread in the sample: enough that
# rows are not exact copies, far too little to look like drift.
JITTER = 0.01


@dataclass
class TrafficResult:
    sent: int = 0
    answered: int = 0
    failed: Counter[str] = field(default_factory=Counter)  # by status code name
    feedback_sent: int = 0
    feedback_wrong: int = 0  # labels sent deliberately wrong
    labels: Counter[str] = field(default_factory=Counter)  # predicted


def parse_shift(pairs: Sequence[str]) -> dict[str, float]:
    shifts: dict[str, float] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        try:
            shifts[name.strip()] = float(raw) if sep else float("nan")
        except ValueError:
            raise SystemExit(f"traffic: --shift wants FEATURE=AMOUNT (a number), got {pair!r}") from None
        if not sep:
            raise SystemExit(f"traffic: --shift wants FEATURE=AMOUNT, got {pair!r}")
    return shifts


class RowSource:
    """Rows like the model's training data (resampled with jitter), shifted where asked."""

    def __init__(self, model: predictions_pb2.Model, *, shift: Mapping[str, float], seed: int) -> None:
        sample = model.training_sample
        columns = {c.name: np.asarray(c.values) for c in sample.columns}
        self.names = [f.name for f in model.features]
        unknown = sorted(set(shift) - set(self.names))
        if unknown:
            raise SystemExit(
                f"traffic: no feature {', '.join(unknown)}; the model has {', '.join(self.names)}"
            )
        if not sample.labels or any(n not in columns for n in self.names):
            raise SystemExit("traffic: the model describes no training sample to draw from")
        self.matrix = np.column_stack([columns[n] for n in self.names])
        self.labels = list(sample.labels)
        self.classes = list(model.classes)
        self.spread = self.matrix.std(axis=0) + 1e-12
        self.offset = np.asarray([shift.get(n, 0.0) for n in self.names])
        self.rng = np.random.default_rng(seed)

    def draw(self) -> tuple[dict[str, float], str]:
        i = int(self.rng.integers(len(self.matrix)))
        row = self.matrix[i] + self.rng.normal(0.0, JITTER, len(self.names)) * self.spread + self.offset
        return dict(zip(self.names, row.tolist(), strict=True)), self.labels[i]

    def wrong_label(self, label: str) -> str:
        others = [c for c in self.classes if c != label]
        return str(self.rng.choice(others)) if others else label


async def run_traffic(
    target: str,
    *,
    count: int | None = None,
    duration_s: float | None = None,
    rate: float = 50.0,
    concurrency: int = 8,
    shift: Mapping[str, float] | None = None,
    feedback_error_rate: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    login: tuple[str, str] | None = None,
) -> TrafficResult:
    """Send predictions (count of them, or for duration_s) at about `rate` per second.

    login: (username, password) to sign in with first (an editor or admin, to send feedback too);
    without it the calls are anonymous, which only a backend with ALLOW_ANONYMOUS_READS answers.
    """
    if count is None and duration_s is None:
        raise ValueError("give count or duration_s")
    result = TrafficResult()
    async with aio.insecure_channel(target) as channel:
        metadata: tuple[tuple[str, str], ...] = ()
        if login is not None:
            auth = auth_pb2_grpc.AuthServiceStub(channel)
            signed_in = await auth.Login(
                auth_pb2.LoginRequest(username=login[0], password=login[1]), timeout=10
            )
            metadata = (("authorization", f"Bearer {signed_in.access_token}"),)
        predictions = predictions_pb2_grpc.PredictionServiceStub(channel)
        monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        model = (
            await predictions.GetModel(predictions_pb2.GetModelRequest(), timeout=10, metadata=metadata)
        ).model
        rows = RowSource(model, shift=shift or {}, seed=seed)
        began = time.monotonic()
        interval = 1.0 / rate if rate > 0 else 0.0
        task_id = progress.add_task("predictions", total=count) if progress is not None else None
        next_index = 0

        def more() -> int | None:
            nonlocal next_index
            if count is not None and next_index >= count:
                return None
            if duration_s is not None and time.monotonic() - began >= duration_s:
                return None
            next_index += 1
            return next_index - 1

        async def worker() -> None:
            while (index := more()) is not None:
                # Paced by the clock, not by answers: a slow backend does not lower the offered rate.
                if interval and (wait := began + index * interval - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                features, truth = rows.draw()
                result.sent += 1
                try:
                    answer = await predictions.Predict(
                        predictions_pb2.PredictRequest(features=features), timeout=10, metadata=metadata
                    )
                except aio.AioRpcError as exc:
                    result.failed[exc.code().name] += 1
                    continue
                result.answered += 1
                result.labels[answer.label] += 1
                if feedback_error_rate is not None and answer.prediction_id:
                    label = truth
                    if rows.rng.random() < feedback_error_rate:
                        label = rows.wrong_label(truth)
                        result.feedback_wrong += 1
                    try:
                        await monitoring.RecordFeedback(
                            monitoring_pb2.RecordFeedbackRequest(
                                prediction_id=answer.prediction_id, label=label
                            ),
                            timeout=10,
                            metadata=metadata,
                        )
                        result.feedback_sent += 1
                    except aio.AioRpcError as exc:
                        result.failed[f"feedback {exc.code().name}"] += 1
                if progress is not None and task_id is not None:
                    progress.advance(task_id)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


def _password() -> str:
    # Never a command-line argument: those are visible to every user of the machine (ps).
    for name in ("FRUITSTACK_PASSWORD", "FIRST_ADMIN_PASSWORD"):
        if value := os.environ.get(name):
            return value
    return PLACEHOLDER_ADMIN_PASSWORD


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", default="127.0.0.1:50051", help="the backend's gRPC address")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--count", type=int, help="how many predictions (default 1000)")
    amount.add_argument("--duration", type=float, help="send for this many seconds instead")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="predictions per second (0: as fast as possible)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--shift", action="append", default=[], metavar="FEATURE=AMOUNT", help="add AMOUNT to a feature"
    )
    parser.add_argument(
        "--feedback",
        type=float,
        metavar="ERROR_RATE",
        help="send the true label after each prediction, a wrong one with this probability (0 to 1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--username",
        default=os.environ.get("FIRST_ADMIN_USERNAME", "admin"),
        help="sign in as this user (default: $FIRST_ADMIN_USERNAME, else admin); the password is "
        "$FRUITSTACK_PASSWORD, else $FIRST_ADMIN_PASSWORD, else nox -s dev's local default",
    )
    parser.add_argument("--anonymous", action="store_true", help="do not sign in")
    args = parser.parse_args(argv)
    if args.feedback is not None and not 0 <= args.feedback <= 1:
        parser.error("--feedback is a probability between 0 and 1")
    count = args.count if args.count is not None or args.duration is not None else 1000
    console = Console()
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, console=console) as progress:
            result = asyncio.run(
                run_traffic(
                    args.target,
                    count=count,
                    duration_s=args.duration,
                    rate=args.rate,
                    concurrency=args.concurrency,
                    shift=parse_shift(args.shift),
                    feedback_error_rate=args.feedback,
                    seed=args.seed,
                    progress=progress,
                    login=None if args.anonymous else (args.username, _password()),
                )
            )
    except aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            console.print(
                f"traffic: the backend at {args.target} cannot be reached; is `nox -s dev` running?"
            )
            return 1
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            console.print(
                f"traffic: {exc.details()} (see --username; the password is an environment variable)"
            )
            return 1
        raise
    console.print(
        f"sent {result.sent}, answered {result.answered}, failed {dict(result.failed) or 0}; "
        f"predicted {dict(result.labels)}"
    )
    if args.feedback is not None:
        console.print(
            f"feedback sent for {result.feedback_sent} ({result.feedback_wrong} deliberately wrong)"
        )
    return 0 if not result.failed else 1


if __name__ == "__main__":
    sys.exit(main())
