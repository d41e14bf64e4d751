"""`nox -s bench -- drift`: how long a drift report takes as its window grows to a million predictions.

In one run: a temporary MLflow registry with a freshly trained model, a real `bentoml serve` of it, a
fresh nx-27017, and the backend in this process (backend.server.open_backend). The prediction log's
summaries of N predictions are written as the backend writes them (buckets of 1,000 rows, sketches of
the model's training-like values), then GetDriftReport(last_predictions=N) is timed through gRPC at
N = 1,000 ... 1,000,000. The report merges one sketch per feature per bucket, so its cost should grow
with the number of buckets, i.e. linearly in N, and never read N documents.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pymongo
from fruitstack.v1 import monitoring_pb2, monitoring_pb2_grpc, predictions_pb2, predictions_pb2_grpc
from grpc import aio
from pydantic import SecretStr
from rich.console import Console
from rich.progress import track
from rich.table import Table

from backend.config import Settings
from backend.monitoring.drift import Summary
from backend.monitoring.repository import BUCKETS
from backend.server import open_backend
from bench.predict_bench import model_service_process, nx_server, registry_server, running, train
from scripts.processes import ROOT, MlflowServer, free_port, http_ok

BUCKET_ROWS = 1000
WINDOWS = (1_000, 10_000, 100_000, 1_000_000)
TARGET_1M_S = 2.0
REPORT = ROOT / ".artifacts" / "bench-drift.json"


def seed_buckets(uri: str, database: str, model: predictions_pb2.Model, rows: int) -> None:
    """Summaries of `rows` predictions like the training data, as the prediction log writes them."""
    rng = np.random.default_rng(0)
    sample = {c.name: np.asarray(c.values) for c in model.training_sample.columns}
    names = [f.name for f in model.features]
    labels = list(model.training_sample.labels)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri)
    collection = client[database][BUCKETS]
    now = datetime.now(UTC)
    n_buckets = rows // BUCKET_ROWS
    for b in track(range(n_buckets), description=f"writing {n_buckets:,} summary buckets"):
        picked = rng.integers(len(labels), size=BUCKET_ROWS)
        summary = Summary()
        summary.update({n: sample[n][picked] for n in names}, Counter(labels[i] for i in picked))
        end = now - timedelta(seconds=n_buckets - b)
        collection.insert_one(
            {
                "model_version": model.version,
                "source": "predict",
                "start": end - timedelta(seconds=1),
                "end": end,
                "served": BUCKET_ROWS,
                **summary.to_doc(),
            }
        )
    client.close()


async def measure(target: str, repeats: int) -> list[dict[str, Any]]:
    rows = []
    async with aio.insecure_channel(target) as channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        for window in WINDOWS:
            request = monitoring_pb2.GetDriftReportRequest(last_predictions=window)
            samples, size = [], 0
            for _ in range(repeats + 1):  # the first call warms the reference cache
                began = time.perf_counter()
                report = (await stub.GetDriftReport(request, timeout=120)).report
                samples.append(time.perf_counter() - began)
                size = report.window_size
            median = statistics.median(samples[1:])
            rows.append(
                {"window": window, "window_size": size, "seconds": median, "buckets": window // BUCKET_ROWS}
            )
    return rows


async def backend_and_measure(
    settings: Settings, repeats: int
) -> tuple[predictions_pb2.Model, list[dict[str, Any]]]:
    async with open_backend(settings) as backend:
        await backend.services.monitoring.prepare()
        await backend.server.start()
        target = f"127.0.0.1:{backend.port}"
        async with aio.insecure_channel(target) as channel:
            model = (
                await predictions_pb2_grpc.PredictionServiceStub(channel).GetModel(
                    predictions_pb2.GetModelRequest(), timeout=30
                )
            ).model
        await asyncio.to_thread(
            seed_buckets, settings.mongodb_uri, settings.mongodb_database, model, WINDOWS[-1]
        )
        return model, await measure(target, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5, help="timed reports per window size")
    args = parser.parse_args(argv)
    console = Console(width=120)
    with (
        tempfile.TemporaryDirectory(prefix="fruitstack-bench-drift-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        (tmp / "mlflow").mkdir()
        registry = stack.enter_context(registry_server(MlflowServer(tmp / "mlflow")))
        home = tmp / "bentoml"
        train(home, tmp / "model.pkl", registry.url)
        model_port = free_port()
        model_service = model_service_process(home, registry.url, port=model_port, log_dir=tmp)
        stack.enter_context(running(model_service, lambda: http_ok(f"http://127.0.0.1:{model_port}/readyz")))
        mongo = stack.enter_context(nx_server(tmp / "nx-27017"))
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            grpc_host="127.0.0.1",
            grpc_port=0,
            mongodb_uri=mongo.uri,
            mongodb_database="bench_drift",
            mongodb_timeout_ms=60_000,
            model_url=f"http://127.0.0.1:{model_port}",
            page_token_secret=SecretStr("bench-page-token-secret-0123456789"),
            drift_check_interval_s=3600,  # no periodic check competing with the timed reports
            # GetDriftReport is a read: measured without signing in (the policy interceptor still runs).
            allow_anonymous_reads=True,
        )
        model, rows = asyncio.run(backend_and_measure(settings, args.repeats))

    table = Table(
        title=f"GetDriftReport by window, {len(model.features)} features (median of {args.repeats})"
    )
    for heading in ("window (predictions)", "buckets merged", "seconds", "ms per 1,000 predictions"):
        table.add_column(heading, justify="right")
    for row in rows:
        table.add_row(
            f"{row['window_size']:,}",
            f"{row['buckets']:,}",
            f"{row['seconds']:.3f}",
            f"{1000 * row['seconds'] / row['buckets']:.2f}",
        )
    console.print(table)
    largest = rows[-1]
    met = largest["seconds"] <= TARGET_1M_S
    console.print(
        f"target: a report over {largest['window_size']:,} predictions in <= {TARGET_1M_S} s: "
        f"{largest['seconds']:.3f} s, {'met' if met else 'NOT met'}"
    )
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": f"{model.name}:{model.version} ({model.dataset})",
        "rows": rows,
        "target_1m_s": TARGET_1M_S,
        "met": met,
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
