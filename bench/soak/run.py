"""`nox -s soak -- --minutes N`: the stack under a mixed workload at half its maximum for N minutes.

The stack (bench/soak/stack.py) runs as real processes on free ports: MLflow with a freshly trained
champion, `bentoml serve`, nx-27017 and `python -m backend`, whose first admin the workload signs
in as. The mix (bench/soak/mix.py) is the app's calls by weight: Predict, PredictBatch, GetModel,
ListFruits, AddFruit, DeleteFruit, SummarizeFruits, RecordFeedback and GetDriftReport.

1. The maximum: closed-loop callers send the mix as fast as they are answered (--max-seconds).
2. The soak: the mix at half that rate (--share) on a clock (open loop) for --minutes. The first 20% (at
   least 15 s) warms up; each process's memory after it is the baseline the end is compared with.

It records, per interval, the calls due in it, their errors by status and p50/p99 latency (from
when each call was due), and each process's RSS (with its children) over time; writes soak.json
and soak.png to --output-dir; prints tables; and exits 1 if any call failed or any process grew
by 10% or more after the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop
from fruitstack.v1 import predictions_pb2, predictions_pb2_grpc
from grpc import aio
from rich.console import Console

from bench.load import CpuProbe, run_load, run_paced, status_of
from bench.predict_bench import cpu_probe
from bench.soak import report
from bench.soak.mix import WEIGHTS, Mix, SignIn
from bench.soak.recorder import MemoryProbe, Recorder
from bench.soak.stack import SoakStack, soak_stack
from scripts.processes import ROOT

OUTPUT_DIR = ROOT / ".artifacts" / "soak"
RATE_SHARE = 0.5  # of the measured maximum: loaded, not saturated
WARMUP_SHARE, MIN_WARMUP_S = 0.2, 15.0
MAX_WARMUP_S = 2.0  # unmeasured seconds before the maximum is measured
LOG_TAIL_BYTES = 4 << 20


@dataclass(frozen=True)
class Options:
    minutes: float
    interval_s: float = 10.0
    max_seconds: float = 10.0
    max_callers: int = 32
    seed: int = 0
    share: float = RATE_SHARE

    @property
    def seconds(self) -> float:
        return 60 * self.minutes

    @property
    def warmup_s(self) -> float:
        # Never more than half the run, so a short one still measures something after it.
        return round(min(self.seconds / 2, max(MIN_WARMUP_S, WARMUP_SHARE * self.seconds)), 1)


@dataclass
class _Memory:
    samples: list[dict[str, Any]]
    after_warmup: dict[str, float] | None = None
    cpu_after_warmup: dict[str, float] | None = None
    warmup_ended: float = 0.0


async def _watch(
    probe: MemoryProbe,
    cpu: CpuProbe,
    recorder: Recorder,
    options: Options,
    *,
    started: float,
    into: _Memory,
    console: Console,
) -> None:
    """Memory every interval and at the warm-up's end (the baseline); a line of progress each time."""
    every = options.interval_s
    ticks = sorted({*(k * every for k in range(int(options.seconds // every) + 1)), options.warmup_s})
    for t in (t for t in ticks if t < options.seconds):
        await asyncio.sleep(max(0.0, started + t - time.perf_counter()))
        reading = probe()
        into.samples.append({"t_s": round(time.perf_counter() - started, 1), "mb": reading})
        if t == options.warmup_s:
            into.after_warmup, into.cpu_after_warmup = reading, cpu()
            into.warmup_ended = time.perf_counter()
        # The newest interval that has ended (its slowest calls may still be on their way).
        done = recorder.interval(int(t // every) - 1)
        last = f"; {done['start_s']:g} s on: p99 {done['p99_ms']} ms" if done else ""
        console.log(
            f"{t:g} s: {recorder.errors} errors{last}; MB "
            + ", ".join(f"{name} {mb:,.0f}" for name, mb in reading.items())
        )


async def soak(stack: SoakStack, options: Options, console: Console) -> dict[str, Any]:
    """Measure the maximum, then soak at a share of it; the report as a JSON-ready dict."""
    async with aio.insecure_channel(stack.target) as channel, SignIn(channel, *stack.login) as sign_in:
        answer = await predictions_pb2_grpc.PredictionServiceStub(channel).GetModel(
            predictions_pb2.GetModelRequest(), timeout=30, metadata=sign_in.metadata
        )
        mix = Mix(channel, sign_in, answer.model, seed=options.seed)
        await mix.prepare()
        cpu = cpu_probe(**stack.processes)

        console.log(f"the maximum: {options.max_callers} closed-loop callers, {options.max_seconds:g} s")
        peak_errors: Counter[str] = Counter()

        async def counted_call(i: int) -> None:
            try:
                await mix.call(i)
            except Exception as exc:  # counted by call and status, then run_load counts it too
                peak_errors[f"{mix.op(i)} {status_of(exc)}"] += 1
                raise

        peak = await run_load(
            counted_call, concurrency=options.max_callers, seconds=options.max_seconds, warmup=MAX_WARMUP_S
        )
        rate = options.share * peak.throughput
        console.log(
            f"maximum {peak.throughput:,.0f} calls/s (p99 {peak.p99_ms:.1f} ms, {peak.errors} errors); "
            f"soaking at {rate:,.0f}/s for {options.minutes:g} min, warm-up {options.warmup_s:g} s"
        )

        recorder = Recorder(options.interval_s, mix.op)
        recorder.measure_ops_from(options.warmup_s)
        probe = MemoryProbe(stack.processes)
        memory = _Memory(samples=[])
        started = time.perf_counter()
        watching = asyncio.create_task(
            _watch(probe, cpu, recorder, options, started=started, into=memory, console=console)
        )
        sent = await run_paced(mix.call, rate=rate, seconds=options.seconds, record=recorder)
        await watching
        end_mb, cpu_end, ended = probe(), cpu(), time.perf_counter()
        memory.samples.append({"t_s": round(ended - started, 1), "mb": end_mb})
        log = await mix.prediction_log()

    assert memory.after_warmup is not None
    assert memory.cpu_after_warmup is not None
    measured_s = ended - memory.warmup_ended
    soak_errors: dict[str, int] = {}
    for row in recorder.intervals():
        for status, n in row["errors"].items():
            soak_errors[status] = soak_errors.get(status, 0) + n
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "note": "shared 2-core machine; other work may run at the same time, so numbers are noisy",
        "options": {**asdict(options), "warmup_s": options.warmup_s},
        "mix": WEIGHTS,
        "maximum": {**peak.as_dict(), "errors_by_call": dict(peak_errors)},
        "soak": {
            "rate": rate,
            "calls": sent,
            "seconds": round(ended - started, 1),
            "after_warmup": recorder.after_warmup(),
        },
        "errors": {
            "total": peak.errors + sum(soak_errors.values()),
            "maximum": peak.errors,
            "soak": soak_errors,
        },
        "intervals": recorder.intervals(),
        "operations": recorder.operations(),
        "memory": {
            "bound": report.MEMORY_GROWTH_BOUND,
            "processes": {
                name: {
                    "soak_start_mb": memory.samples[0]["mb"][name],
                    "after_warmup_mb": memory.after_warmup[name],
                    "end_mb": end_mb[name],
                    "growth": round(end_mb[name] / memory.after_warmup[name] - 1, 4),
                }
                for name in end_mb
            },
            "samples": memory.samples,
        },
        # After the warm-up: how much of the machine each process used at the soak's rate.
        "cpu_cores": {
            name: round((cpu_end[name] - memory.cpu_after_warmup[name]) / measured_s, 3) for name in cpu_end
        },
        "prediction_log": {"logged": log.logged, "dropped": log.dropped, "queued": log.queued},
    }
    result["failures"] = report.failures(result)
    result["passed"] = not result["failures"]
    return result


def keep_logs(tmp: Path, into: Path) -> None:
    """The end of each server's log, for a post-mortem once the temporary folder is gone."""
    into.mkdir(parents=True, exist_ok=True)
    for log in tmp.rglob("*.log"):
        with log.open("rb") as source:
            # nx-27017 logs every command: a long soak's log runs to hundreds of MB.
            source.seek(max(0, log.stat().st_size - LOG_TAIL_BYTES))
            (into / log.name).write_bytes(source.read())


def run(options: Options, output_dir: Path, console: Console) -> dict[str, Any]:
    """Start the stack, soak it, stop it; write soak.json and soak.png; print the tables."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fruitstack-soak-") as tmp:
        try:
            with soak_stack(Path(tmp), console) as stack:
                result = uvloop.run(soak(stack, options, console))
        finally:
            keep_logs(Path(tmp), output_dir / "logs")
    (output_dir / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    report.plot(result, output_dir / "soak.png")
    report.print_report(result, console)
    console.log(f"wrote soak.json, soak.png and the servers' logs/ to {output_dir}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the paced soak (default 10)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per row of the report")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="measured seconds of the maximum")
    parser.add_argument("--max-callers", type=int, default=32, help="closed-loop callers for the maximum")
    parser.add_argument(
        "--share", type=float, default=RATE_SHARE, help="of the maximum to soak at (default 0.5, the issue's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0:
        parser.error("--minutes and --interval must be positive")
    if not 0 < args.share <= 1:
        parser.error("--share is a fraction of the maximum, above 0 and at most 1")
    options = Options(
        minutes=args.minutes,
        interval_s=args.interval,
        max_seconds=args.max_seconds,
        max_callers=args.max_callers,
        seed=args.seed,
        share=args.share,
    )
    console = Console(width=max(Console().width, 130))  # the tables stay readable in CI logs
    result = run(options, args.output_dir, console)
    return 0 if result["passed"] else 1
