"""The soak's report: its verdict, its tables and its plot, all from the one JSON-ready dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: CI has no display

import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

# Issue 15: no call may fail, and no process may grow by a tenth or more once warmed up.
MAX_ERRORS = 0
MEMORY_GROWTH_BOUND = 0.10


def failures(report: dict[str, Any]) -> list[str]:
    """What broke the soak's bounds, in words; empty when it passed."""
    found: list[str] = []
    errors = report["errors"]
    if errors["total"] > MAX_ERRORS:
        peak = report["maximum"].get("errors_by_call", {})
        found.append(
            f"{errors['total']} calls failed: maximum {errors['maximum']} {peak}, soak {errors['soak']}"
        )
    for name, row in report["memory"]["processes"].items():
        if row["growth"] >= MEMORY_GROWTH_BOUND:
            found.append(
                f"{name}: memory grew {row['growth']:.1%} after the warm-up "
                f"({row['after_warmup_mb']:,.0f} to {row['end_mb']:,.0f} MB; bound {MEMORY_GROWTH_BOUND:.0%})"
            )
    return found


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _errors(errors: dict[str, int]) -> str:
    most_first = sorted(errors.items(), key=lambda item: -item[1])
    return ", ".join(f"{n:,} {status}" for status, n in most_first) if errors else "0"


def print_report(report: dict[str, Any], console: Console) -> None:
    options, soak, peak = report["options"], report["soak"], report["maximum"]
    calls = Table(
        title=f"Soak {report['date']}: {options['minutes']:g} min at {options['share']:.0%} of the maximum",
        caption=f"{report['machine']['cpus']} cores, shared with other work",
    )
    for heading in ("phase", "calls/s", "calls", "errors", "p50 ms", "p99 ms"):
        calls.add_column(heading, justify="left" if heading in ("phase", "errors") else "right")
    calls.add_row(
        f"maximum: {peak['concurrency']} closed-loop callers, {peak['seconds']:.0f} s",
        f"{peak['throughput']:,.0f}",
        f"{peak['requests']:,}",
        str(peak["errors"]),
        _ms(peak["p50_ms"]),
        _ms(peak["p99_ms"]),
    )
    calls.add_row(
        f"soak: paced, after the {options['warmup_s']:g} s warm-up",
        f"{soak['rate']:,.0f}",
        f"{soak['after_warmup']['requests']:,}",
        _errors(soak["after_warmup"]["errors"]),
        _ms(soak["after_warmup"]["p50_ms"]),
        _ms(soak["after_warmup"]["p99_ms"]),
    )
    calls.add_row(
        "soak: the warm-up included",
        "",
        f"{soak['calls']:,}",
        _errors(report["errors"]["soak"]),
        "",
        "",
    )
    console.print(calls)

    over_time = Table(
        title=f"Over time (every {options['interval_s']:g} s; latency from when a call was due)"
    )
    for heading in ("from s", "calls", "errors", "p50 ms", "p99 ms"):
        over_time.add_column(heading, justify="right")
    for row in report["intervals"]:
        warm = " (warm-up)" if row["start_s"] < options["warmup_s"] else ""
        over_time.add_row(
            f"{row['start_s']:g}{warm}",
            f"{row['requests']:,}",
            _errors(row["errors"]),
            _ms(row["p50_ms"]),
            _ms(row["p99_ms"]),
        )
    console.print(over_time)

    memory = Table(
        title="Memory and CPU by process",
        caption=f"RSS with child processes; after the warm-up: growth, CPU; bound {MEMORY_GROWTH_BOUND:.0%}",
    )
    for heading in ("process", "soak start MB", "after warm-up MB", "end MB", "growth", "CPU cores busy"):
        memory.add_column(heading, justify="left" if heading == "process" else "right")
    for name, row in report["memory"]["processes"].items():
        memory.add_row(
            name,
            f"{row['soak_start_mb']:,.0f}",
            f"{row['after_warmup_mb']:,.0f}",
            f"{row['end_mb']:,.0f}",
            f"{row['growth']:+.1%}",
            f"{report['cpu_cores'].get(name, 0.0):.2f}",
        )
    memory.add_row("soak (client)", "", "", "", "", f"{report['cpu_cores'].get('client', 0.0):.2f}")
    console.print(memory)

    per_op = Table(title="By call, after the warm-up")
    for heading in ("call", "calls", "errors", "p50 ms", "p99 ms"):
        per_op.add_column(heading, justify="left" if heading == "call" else "right")
    for op, row in report["operations"].items():
        per_op.add_row(
            op, f"{row['requests']:,}", _errors(row["errors"]), _ms(row["p50_ms"]), _ms(row["p99_ms"])
        )
    console.print(per_op)

    log = report["prediction_log"]
    console.print(
        f"prediction log: {log['logged']:,} logged, {log['dropped']:,} dropped, {log['queued']:,} queued"
    )
    if report["failures"]:
        console.print("[bold red]FAILED[/]: " + "; ".join(report["failures"]))
    else:
        console.print(
            f"[bold green]passed[/]: 0 errors, every process grew less than {MEMORY_GROWTH_BOUND:.0%}"
        )


def plot(report: dict[str, Any], path: Path) -> None:
    """p50 and p99 over time above, each process's memory over time below; the warm-up shaded."""
    warmup_s = report["options"]["warmup_s"]
    interval_s = report["options"]["interval_s"]
    figure, (latency, memory) = plt.subplots(2, 1, sharex=True, figsize=(11, 7), constrained_layout=True)
    rows = [r for r in report["intervals"] if r["p99_ms"] is not None]
    middles = [r["start_s"] + interval_s / 2 for r in rows]
    latency.plot(middles, [r["p99_ms"] for r in rows], marker="o", label="p99")
    latency.plot(middles, [r["p50_ms"] for r in rows], marker=".", label="p50")
    latency.set_ylabel("latency, ms")
    latency.set_ylim(bottom=0)
    latency.set_title(
        f"Soak {report['date']}: {report['soak']['rate']:,.0f} calls/s "
        f"({report['options']['share']:.0%} of {report['maximum']['throughput']:,.0f}), "
        f"{report['errors']['total']} errors"
    )
    samples = report["memory"]["samples"]
    for name in report["memory"]["processes"]:
        memory.plot([s["t_s"] for s in samples], [s["mb"][name] for s in samples], marker=".", label=name)
    memory.set_ylabel("RSS, MB")
    memory.set_xlabel("seconds into the soak")
    memory.set_ylim(bottom=0)
    for axes in (latency, memory):
        axes.axvspan(0, warmup_s, color="grey", alpha=0.15, label="warm-up")
        axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    plt.close(figure)
