"""`nox -s bench -- predict`: Predict through the backend and the model service against two references.

In one run, on this machine, one scenario at a time (so they do not compete for the cores):
  (a) baseline: a minimal FastAPI app with the joblib model in-process (bench/baseline_app.py);
  (b) ceiling:  an empty grpc.aio server answering Predict with a constant (bench/empty_server.py);
  (c) fruitstack: `python -m backend` in front of a real `bentoml serve`, plus a 1M-row PredictBatch.
Each is driven by 1 and 32 closed-loop callers from this process; the model is trained afresh into
a temporary BentoML home, so the run depends on nothing but the code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import joblib
import numpy as np
import psutil
import uvloop
from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from backend import columns
from bench.load import CpuProbe, LoadResult, grpc_load, http_load
from tests.support import ROOT, ManagedProcess, free_port

BENTO_DIR = ROOT / "bento"

# Targets of issue 6 for Predict through the backend and the model service.
TARGET_32_VS_BASELINE = 2.5
TARGET_32_VS_CEILING = 0.8
TARGET_P99_VS_BASELINE = 0.5
TARGET_1_P50_VS_BASELINE = 2.0
TARGET_BULK_ROWS_PER_S = 1_000_000


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def grpc_serving(target: str, service: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def grpc_answers(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
        except grpc.FutureTimeoutError:
            return False
    return True


@contextmanager
def running(process: ManagedProcess, ready: Any, timeout: float = 120) -> Iterator[ManagedProcess]:
    process.start()
    try:
        process.wait_ready(ready, timeout=timeout)
        yield process
    finally:
        process.stop()


def train(home: Path, artifact: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run(
        [sys.executable, "train.py", "--quiet", "--output", str(artifact)],
        cwd=BENTO_DIR,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def sample_rows(model: predictions_pb2.Model, n: int, seed: int = 0) -> list[dict[str, float]]:
    """Rows spread over each feature's training range, like real queries."""
    rng = np.random.default_rng(seed)
    return [{f.name: float(rng.uniform(f.min, f.max)) for f in model.features} for _ in range(n)]


async def bulk(target: str, model: predictions_pb2.Model, *, rows: int, chunk_rows: int) -> dict[str, Any]:
    """Score `rows` random rows with PredictBatch end to end: build requests, stream, read every answer."""
    rng = np.random.default_rng(1)
    data = {f.name: rng.uniform(f.min, f.max, rows) for f in model.features}
    async with aio.insecure_channel(
        target,
        options=[("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)],
    ) as channel:
        stub = predictions_pb2_grpc.PredictionServiceStub(channel)
        began = time.perf_counter()

        async def requests() -> Any:
            for start in range(0, rows, chunk_rows):
                yield columns.batch_request(
                    {name: values[start : start + chunk_rows] for name, values in data.items()}
                )

        labels: list[np.ndarray[Any, Any]] = []
        async for answer in stub.PredictBatch(requests(), timeout=120):
            labels.append(np.asarray(answer.label_indices))
            for column in answer.probabilities:
                columns.array(column)
        seconds = time.perf_counter() - began
    scored = sum(len(x) for x in labels)
    if scored != rows:
        raise RuntimeError(f"PredictBatch answered {scored} rows for {rows}")
    return {
        "rows": rows,
        "chunk_rows": chunk_rows,
        "seconds": round(seconds, 3),
        "rows_per_s": rows / seconds,
    }


def in_process_bulk(artifact: Path, model: predictions_pb2.Model, rows: int) -> dict[str, Any]:
    """For reference: predict_proba on the same number of rows inside one process, no I/O at all."""
    pipeline = joblib.load(artifact)
    x = np.random.default_rng(1).uniform(size=(rows, len(model.features)))
    began = time.perf_counter()
    pipeline.predict_proba(x)
    seconds = time.perf_counter() - began
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": rows / seconds}


async def fetch_model(target: str) -> predictions_pb2.Model:
    async with aio.insecure_channel(target) as channel:
        answer = await predictions_pb2_grpc.PredictionServiceStub(channel).GetModel(
            predictions_pb2.GetModelRequest(), timeout=10
        )
    return answer.model


def cpu_probe(**servers: ManagedProcess) -> CpuProbe:
    """CPU seconds of each server (with its child processes: bentoml's worker) and of this process
    alone ("client": the callers). Per request, they show where the machine's two cores go."""
    trees = {name: psutil.Process(server.proc.pid) for name, server in servers.items() if server.proc}
    this_process = psutil.Process()

    def seconds(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return float(times.user + times.system)

    def probe() -> dict[str, float]:
        used = {
            name: sum(map(seconds, [root, *root.children(recursive=True)])) for name, root in trees.items()
        }
        used["client"] = seconds(this_process)
        return used

    return probe


def loads(run: Any, concurrencies: list[int], console: Console, label: str) -> list[LoadResult]:
    results = []
    for concurrency in concurrencies:
        result: LoadResult = uvloop.run(run(concurrency))
        console.log(
            f"{label}: {concurrency} caller(s): {result.throughput:,.0f}/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, {result.errors} errors"
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per load level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--bulk-rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--output", type=Path, default=ROOT / ".artifacts" / "bench.json")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 130))  # the tables stay readable in CI logs
    conc: list[int] = args.concurrency

    def levels(run_one: Any) -> Any:
        return lambda c: run_one(concurrency=c, seconds=args.seconds, warmup=args.warmup)

    with tempfile.TemporaryDirectory(prefix="fruitstack-bench-") as tmp_name:
        tmp = Path(tmp_name)
        home, artifact = tmp / "bentoml", tmp / "model.pkl"
        console.log("training the model into a temporary BentoML home")
        train(home, artifact)
        bento_env = {
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "True",
            "FRUITSTACK_MODEL_STATE_DIR": str(home / "fruitstack"),
        }

        # (c) fruitstack: backend + model service.
        model_port, grpc_port = free_port(), free_port()
        model_service = ManagedProcess(
            "bentoml",
            [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1", "--port", str(model_port)],
            log_dir=tmp,
            env=bento_env,
            cwd=BENTO_DIR,
        )
        target = f"127.0.0.1:{grpc_port}"
        backend = ManagedProcess(
            "backend",
            [sys.executable, "-m", "backend"],
            log_dir=tmp,
            env={
                "GRPC_HOST": "127.0.0.1",
                "GRPC_PORT": str(grpc_port),
                "MODEL_URL": f"http://127.0.0.1:{model_port}",
                # MongoDB is not needed for predictions; FruitService just reports NOT_SERVING.
                "MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}",
                "LOCAL_MODE": "true",
                "LOG_LEVEL": "WARNING",
            },
        )
        with (
            running(model_service, lambda: http_ok(f"http://127.0.0.1:{model_port}/readyz")),
            running(backend, lambda: grpc_serving(target, "fruitstack.v1.PredictionService")),
        ):
            model = asyncio.run(fetch_model(target))
            bodies = sample_rows(model, 1000)
            console.log(f"model {model.name}:{model.version} ({model.dataset}); backend + model service up")
            cpu = cpu_probe(backend=backend, model=model_service)
            fruitstack = loads(
                levels(lambda **kw: grpc_load(target, bodies, cpu=cpu, **kw)), conc, console, "fruitstack"
            )
            bulk_result = uvloop.run(bulk(target, model, rows=args.bulk_rows, chunk_rows=args.chunk_rows))
            console.log(f"fruitstack PredictBatch: {bulk_result['rows_per_s']:,.0f} rows/s")

        # (a) baseline: FastAPI + joblib in-process.
        http_port = free_port()
        baseline_app = ManagedProcess(
            "baseline",
            [sys.executable, "-m", "uvicorn", "bench.baseline_app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(http_port), "--log-level", "warning", "--no-access-log"],
            log_dir=tmp,
            env={"MODEL_PATH": str(artifact), "FEATURES": ",".join(f.name for f in model.features)},
        )  # fmt: skip
        with running(baseline_app, lambda: http_ok(f"http://127.0.0.1:{http_port}/docs")):
            url = f"http://127.0.0.1:{http_port}/predict"
            cpu = cpu_probe(baseline=baseline_app)
            baseline = loads(
                levels(lambda **kw: http_load(url, bodies, cpu=cpu, **kw)), conc, console, "baseline"
            )

        # (b) ceiling: an empty grpc.aio server.
        empty_port = free_port()
        empty_server = ManagedProcess(
            "empty", [sys.executable, "-m", "bench.empty_server", str(empty_port)], log_dir=tmp
        )
        with running(empty_server, lambda: grpc_answers(f"127.0.0.1:{empty_port}")):
            cpu = cpu_probe(ceiling=empty_server)
            ceiling = loads(
                levels(lambda **kw: grpc_load(f"127.0.0.1:{empty_port}", bodies, cpu=cpu, **kw)),
                conc,
                console,
                "ceiling",
            )
        reference_bulk = in_process_bulk(artifact, model, args.bulk_rows)

    report = build_report(conc, baseline, ceiling, fruitstack, bulk_result, reference_bulk)
    print_report(report, console)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    console.log(f"wrote {args.output}")
    return 0


def build_report(
    concurrencies: list[int],
    baseline: list[LoadResult],
    ceiling: list[LoadResult],
    fruitstack: list[LoadResult],
    bulk_result: dict[str, Any],
    reference_bulk: dict[str, Any],
) -> dict[str, Any]:
    by_level = {
        c: {"baseline": b, "ceiling": e, "fruitstack": f}
        for c, b, e, f in zip(concurrencies, baseline, ceiling, fruitstack, strict=True)
    }
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, target: float, *, at_least: bool) -> None:
        met = value >= target if at_least else value <= target
        bound = f"{'>=' if at_least else '<='} {target}"
        checks.append({"check": name, "value": round(value, 3), "target": bound, "met": met})

    if 32 in by_level:
        base, top, ours = (by_level[32][k] for k in ("baseline", "ceiling", "fruitstack"))
        check(
            "32 callers: req/s vs baseline",
            ours.throughput / base.throughput,
            TARGET_32_VS_BASELINE,
            at_least=True,
        )
        check(
            "32 callers: req/s vs empty server",
            ours.throughput / top.throughput,
            TARGET_32_VS_CEILING,
            at_least=True,
        )
        check(
            "32 callers: p99 vs baseline p99",
            ours.p99_ms / base.p99_ms,
            TARGET_P99_VS_BASELINE,
            at_least=False,
        )
    if 1 in by_level:
        base, ours = by_level[1]["baseline"], by_level[1]["fruitstack"]
        check(
            "1 caller: p50 vs baseline p50",
            ours.p50_ms / base.p50_ms,
            TARGET_1_P50_VS_BASELINE,
            at_least=False,
        )
    check("PredictBatch 1M rows: rows/s", bulk_result["rows_per_s"], TARGET_BULK_ROWS_PER_S, at_least=True)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "note": "shared 2-core machine; other work ran at the same time, so numbers are noisy",
        "predict": [
            {"scenario": name, **result.as_dict()}
            for level in by_level.values()
            for name, result in level.items()
        ],
        "bulk": {"fruitstack_predict_batch": bulk_result, "in_process_predict_proba": reference_bulk},
        "targets": checks,
    }


def print_report(report: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Predict, {report['date']}")
    headings = ("scenario", "callers", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms per request", "cores")
    text_columns = {"scenario", "CPU ms per request"}
    for heading in headings:
        table.add_column(heading, justify="left" if heading in text_columns else "right")
    for row in report["predict"]:
        cpu_ms = row["cpu_ms_per_request"]
        numbers = (
            f"{row['throughput']:,.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            str(row["errors"]),
            ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_ms.items()),
            # Cores busy, all processes together: how close to the machine's limit the scenario ran.
            f"{sum(cpu_ms.values()) * row['throughput'] / 1000:.2f}",
        )
        table.add_row(row["scenario"], str(row["concurrency"]), *numbers)
    console.print(table)
    bulk_table = Table(title="Bulk scoring")
    for heading in ("path", "rows", "seconds", "rows/s"):
        bulk_table.add_column(heading, justify="left" if heading == "path" else "right")
    for name, row in report["bulk"].items():
        bulk_table.add_row(name, f"{row['rows']:,}", f"{row['seconds']:.3f}", f"{row['rows_per_s']:,.0f}")
    console.print(bulk_table)
    targets = Table(title="Targets of issue 6")
    for heading in ("check", "value", "target", "met"):
        targets.add_column(heading)
    for row in report["targets"]:
        targets.add_row(row["check"], f"{row['value']:,.3f}", row["target"], "yes" if row["met"] else "NO")
    console.print(targets)


if __name__ == "__main__":
    sys.exit(main())
