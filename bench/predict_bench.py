"""`nox -s bench -- predict`: Predict through the backend and the model service against two references.

In one run, on this machine, three scenarios, all servers up but loaded one at a time (so they do
not compete for the cores):
  (a) baseline: a minimal FastAPI app with the joblib model in-process (bench/baseline_app.py);
  (b) ceiling:  an empty grpc.aio server answering Predict with a constant (bench/empty_server.py);
  (c) fruitstack: `python -m backend` in front of a real `bentoml serve`, plus a 1M-row PredictBatch;
      the backend logs every prediction to a real nx-27017;
  (d) fruitstack, log off: the same with PREDICTION_LOG_ENABLED=false, the reference for what
      logging costs on the prediction path.
Each is driven by 1 and 32 closed-loop callers from this process, in interleaved rounds (medians
reported; ratios taken round by round); the model is trained afresh into a temporary BentoML home,
so the run depends on nothing but the code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import psutil
import uvloop
from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from grpc import aio
from rich.console import Console
from rich.table import Table

from backend import container_probe
from backend.prediction import wire
from bench.load import CpuProbe, LoadResult, grpc_load, http_load
from scripts.processes import ROOT, ManagedProcess, MlflowServer, NxServer, free_port, http_ok

BENTO_DIR = ROOT / "bento"
PREDICTION_SERVICE = "fruitstack.v1.PredictionService"


@dataclass(frozen=True)
class RatioTarget:
    """fruitstack's `measure` over scenario `versus`'s, at `callers`, must be >= (or <=) `bound`."""

    name: str
    callers: int
    versus: str
    measure: str
    bound: float
    at_least: bool
    issue: int = 6


LOG_OFF = "fruitstack, log off"

# Targets for Predict through the backend and the model service: against the references
# (baseline and ceiling) and logging every prediction against not logging.
RATIO_TARGETS = (
    RatioTarget("32 callers: req/s vs baseline", 32, "baseline", "throughput", 2.5, at_least=True),
    RatioTarget("32 callers: req/s vs empty server", 32, "ceiling", "throughput", 0.8, at_least=True),
    RatioTarget("32 callers: p99 vs baseline p99", 32, "baseline", "p99_ms", 0.5, at_least=False),
    RatioTarget("1 caller: p50 vs baseline p50", 1, "baseline", "p50_ms", 2.0, at_least=False),
    RatioTarget("32 callers: req/s, log on vs off", 32, LOG_OFF, "throughput", 0.9, at_least=True, issue=12),
    RatioTarget("32 callers: p99, log on vs off", 32, LOG_OFF, "p99_ms", 1.2, at_least=False, issue=12),
)
TARGET_BULK_ROWS_PER_S = 1_000_000


def predictions_serving(target: str) -> bool:
    return container_probe.check(target, service=PREDICTION_SERVICE) == "SERVING"


@contextlib.contextmanager
def nx_server(data_dir: Path) -> Iterator[NxServer]:
    server = NxServer(data_dir).start()
    try:
        yield server
    finally:
        server.stop()


def grpc_answers(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=1)
        except grpc.FutureTimeoutError:
            return False
    return True


@contextlib.contextmanager
def running(process: ManagedProcess, ready: Any, timeout: float = 120) -> Iterator[ManagedProcess]:
    process.start()
    try:
        process.wait_ready(ready, timeout=timeout)
        yield process
    finally:
        process.stop()


def train(home: Path, artifact: Path, tracking_uri: str) -> None:
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    subprocess.run(
        [sys.executable, "train.py", "--quiet", "--output", str(artifact)],
        cwd=BENTO_DIR,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def model_service_process(
    home: Path, tracking_uri: str, *, port: int, log_dir: Path, poll_interval_s: float | None = 0
) -> ManagedProcess:
    """`bentoml serve` of bento/service.py on port, serving the registry's champion (store: home).

    poll_interval_s: how often it looks the champion alias up; 0 (the benchmarks) measures scoring
    alone, with no look-ups in the background; None keeps the service's default, as in production.
    """
    env = {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "FRUITSTACK_MODEL_STATE_DIR": str(home / "fruitstack"),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if poll_interval_s is not None:
        env["FRUITSTACK_MODEL_POLL_INTERVAL_S"] = str(poll_interval_s)
    return ManagedProcess(
        "bentoml",
        [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
        log_dir=log_dir,
        env=env,
        cwd=BENTO_DIR,
    )


@contextlib.contextmanager
def registry_server(server: MlflowServer) -> Iterator[MlflowServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
                yield wire.bulk_request(
                    {name: values[start : start + chunk_rows] for name, values in data.items()}
                )

        labels: list[np.ndarray[Any, Any]] = []
        async for answer in stub.PredictBatch(requests(), timeout=120):
            labels.append(np.asarray(answer.label_indices))
            for column in answer.probabilities:
                wire.array(column)
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


# One scenario's load at a given number of callers (its target, bodies and CPU probe bound already).
Scenario = Callable[..., Coroutine[Any, Any, LoadResult]]


def measure(
    scenarios: dict[str, Scenario],
    concurrencies: list[int],
    *,
    rounds: int,
    seconds: float,
    warmup: float,
    console: Console,
) -> dict[str, dict[int, list[LoadResult]]]:
    """Every scenario at every level, `rounds` times, interleaved: round after round, each level runs
    every scenario back to back (in a rotating order), so a burst of other work on this shared machine
    lands on one round of all of them rather than on all rounds of one, and ratios are taken between
    runs minutes apart at most."""
    results: dict[str, dict[int, list[LoadResult]]] = {
        name: {c: [] for c in concurrencies} for name in scenarios
    }
    names = list(scenarios)
    for round_number in range(rounds):
        shift = round_number % len(names)
        order = names[shift:] + names[:shift]
        for concurrency in concurrencies:
            for name in order:
                result = uvloop.run(scenarios[name](concurrency=concurrency, seconds=seconds, warmup=warmup))
                console.log(
                    f"round {round_number + 1}/{rounds}, {name}: {concurrency} caller(s): "
                    f"{result.throughput:,.0f}/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                    f"{result.errors} errors"
                )
                results[name][concurrency].append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per load level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--rounds", type=int, default=3, help="times each scenario is measured, interleaved with the others"
    )
    parser.add_argument("--bulk-rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--output", type=Path, default=ROOT / ".artifacts" / "bench.json")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 130))  # the tables stay readable in CI logs
    conc: list[int] = args.concurrency

    with tempfile.TemporaryDirectory(prefix="fruitstack-bench-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        home, artifact = tmp / "bentoml", tmp / "model.pkl"
        console.log("starting a temporary MLflow registry and registering the model in it")
        (tmp / "mlflow").mkdir()
        registry = stack.enter_context(registry_server(MlflowServer(tmp / "mlflow")))
        train(home, artifact, registry.url)

        model_port, grpc_port, http_port, empty_port = free_port(), free_port(), free_port(), free_port()
        target, empty_target = f"127.0.0.1:{grpc_port}", f"127.0.0.1:{empty_port}"
        quiet_port = free_port()
        quiet_target = f"127.0.0.1:{quiet_port}"
        # The prediction log's MongoDB: a real nx-27017, as under `nox -s dev`.
        mongo = stack.enter_context(nx_server(tmp / "nx-27017"))
        # (c) fruitstack: backend + model service.
        # Scoring alone: no alias look-ups in the background during the rounds.
        model_service = model_service_process(home, registry.url, port=model_port, log_dir=tmp)

        def backend_process(name: str, port: int, **extra: str) -> ManagedProcess:
            env = {
                "GRPC_HOST": "127.0.0.1",
                "GRPC_PORT": str(port),
                "MODEL_URL": f"http://127.0.0.1:{model_port}",
                "MONGODB_URI": mongo.uri,
                "MONGODB_DATABASE": name.replace(" ", "_").replace(",", ""),
                "LOCAL_MODE": "true",
                # Predictions as anonymous reads: the prediction path is measured, not sign-in
                # (the policy interceptor still runs for every call, as in production).
                "ALLOW_ANONYMOUS_READS": "true",
                "LOG_LEVEL": "WARNING",
                **extra,
            }
            return ManagedProcess(name, [sys.executable, "-m", "backend"], log_dir=tmp, env=env)

        backend = backend_process("backend", grpc_port)
        # (d) the same backend, logging nothing.
        quiet_backend = backend_process("backend-log-off", quiet_port, PREDICTION_LOG_ENABLED="false")
        # (b) ceiling: an empty grpc.aio server.
        empty_server = ManagedProcess(
            "empty", [sys.executable, "-m", "bench.empty_server", str(empty_port)], log_dir=tmp
        )
        with contextlib.ExitStack() as servers:
            servers.enter_context(
                running(model_service, lambda: http_ok(f"http://127.0.0.1:{model_port}/readyz"))
            )
            for process, address in ((backend, target), (quiet_backend, quiet_target)):
                servers.enter_context(running(process, functools.partial(predictions_serving, address)))
            model = asyncio.run(fetch_model(target))
            bodies = sample_rows(model, 1000)
            console.log(f"model {model.name}:{model.version} ({model.dataset}); backend + model service up")
            # (a) baseline: FastAPI + joblib in-process.
            baseline_app = ManagedProcess(
                "baseline",
                [sys.executable, "-m", "uvicorn", "bench.baseline_app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(http_port),
                 "--log-level", "warning", "--no-access-log"],
                log_dir=tmp,
                env={"MODEL_PATH": str(artifact), "FEATURES": ",".join(f.name for f in model.features)},
            )  # fmt: skip
            servers.enter_context(
                running(baseline_app, lambda: http_ok(f"http://127.0.0.1:{http_port}/docs"))
            )
            servers.enter_context(running(empty_server, lambda: grpc_answers(empty_target)))
            scenarios: dict[str, Scenario] = {
                "baseline": functools.partial(
                    http_load,
                    f"http://127.0.0.1:{http_port}/predict",
                    bodies,
                    cpu=cpu_probe(baseline=baseline_app),
                ),
                "ceiling": functools.partial(
                    grpc_load, empty_target, bodies, cpu=cpu_probe(ceiling=empty_server)
                ),
                "fruitstack": functools.partial(
                    grpc_load,
                    target,
                    bodies,
                    cpu=cpu_probe(backend=backend, model=model_service, mongo=mongo.process),
                ),
                LOG_OFF: functools.partial(
                    grpc_load, quiet_target, bodies, cpu=cpu_probe(backend=quiet_backend, model=model_service)
                ),
            }
            results = measure(
                scenarios, conc, rounds=args.rounds, seconds=args.seconds, warmup=args.warmup, console=console
            )
            bulk_result = uvloop.run(bulk(target, model, rows=args.bulk_rows, chunk_rows=args.chunk_rows))
            console.log(f"fruitstack PredictBatch: {bulk_result['rows_per_s']:,.0f} rows/s")
        reference_bulk = in_process_bulk(artifact, model, args.bulk_rows)

    report = build_report(results, bulk_result, reference_bulk)
    print_report(report, console)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    console.log(f"wrote {args.output}")
    return 0


def summarize(runs: list[LoadResult]) -> dict[str, Any]:
    """Medians over the rounds (errors summed), with every round kept for the record."""
    return {
        "concurrency": runs[0].concurrency,
        "rounds": len(runs),
        "throughput": statistics.median(r.throughput for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "errors": sum(r.errors for r in runs),
        "cpu_ms_per_request": {
            name: statistics.median(r.cpu_ms_per_request[name] for r in runs)
            for name in runs[0].cpu_ms_per_request
        },
        "each_round": [r.as_dict() for r in runs],
    }


def build_report(
    results: dict[str, dict[int, list[LoadResult]]],
    bulk_result: dict[str, Any],
    reference_bulk: dict[str, Any],
) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []

    def check(name: str, values: list[float], target: float, *, at_least: bool) -> None:
        """The median over rounds decides; the range says how much the rounds agreed."""
        value = statistics.median(values)
        met = value >= target if at_least else value <= target
        bound = f"{'>=' if at_least else '<='} {target}"
        checks.append(
            {
                "check": name,
                "value": round(value, 3),
                "low": round(min(values), 3),
                "high": round(max(values), 3),
                "target": bound,
                "met": met,
            }
        )

    def per_round(level: int, versus: str, measure: str) -> list[float]:
        """fruitstack's `measure` over another scenario's, round by round (runs close in time)."""
        pairs = zip(results["fruitstack"][level], results[versus][level], strict=True)
        return [getattr(ours, measure) / getattr(theirs, measure) for ours, theirs in pairs]

    levels = set(results["fruitstack"])
    for target in RATIO_TARGETS:
        if target.callers in levels:
            values = per_round(target.callers, target.versus, target.measure)
            check(target.name, values, target.bound, at_least=target.at_least)
    check(
        f"PredictBatch {bulk_result['rows']:,} rows: rows/s (one run)",
        [bulk_result["rows_per_s"]],
        TARGET_BULK_ROWS_PER_S,
        at_least=True,
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "note": "shared 2-core machine; other work may run at the same time, so numbers are noisy",
        "predict": [
            {"scenario": name, **summarize(results[name][level])}
            for level in sorted(levels)
            for name in results
        ],
        "bulk": {"fruitstack_predict_bulk": bulk_result, "in_process_predict_proba": reference_bulk},
        "targets": checks,
    }


def print_report(report: dict[str, Any], console: Console) -> None:
    rounds = report["predict"][0]["rounds"]
    table = Table(title=f"Predict, {report['date']}: medians of {rounds} interleaved rounds")
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
    targets = Table(title="Targets (issues 6 and 12)")
    for heading in ("check", "median", "rounds' range", "target", "met"):
        targets.add_column(heading)
    for row in report["targets"]:
        spread = f"{row['low']:,.3f} to {row['high']:,.3f}" if row["low"] != row["high"] else ""
        targets.add_row(
            row["check"], f"{row['value']:,.3f}", spread, row["target"], "yes" if row["met"] else "NO"
        )
    console.print(targets)


if __name__ == "__main__":
    sys.exit(main())
