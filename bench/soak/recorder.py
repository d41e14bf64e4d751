"""What the soak measures while it runs: each call's outcome, and each process's memory."""

from __future__ import annotations

import contextlib
from array import array
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from bench.load import Outcome
from scripts.processes import ManagedProcess


@dataclass
class _Calls:
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))  # of the OK ones
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "OK":
            self.latencies_ms.append(outcome.latency_s * 1000)
        else:
            self.errors[outcome.status] += 1

    def summary(self) -> dict[str, Any]:
        ms = np.asarray(self.latencies_ms)
        return {
            "requests": len(ms) + self.errors.total(),
            "errors": dict(self.errors),
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        }


class Recorder:
    """Outcomes by interval of the time they were due, and by operation.

    Latencies are kept as plain doubles (8 bytes a call), so an hour at a few hundred calls per
    second costs the soak process tens of MB, not the hundreds a list of floats would.
    """

    def __init__(self, interval_s: float, op_of: Callable[[int], str]) -> None:
        self.interval_s = interval_s
        self._op_of = op_of
        self._intervals: dict[int, _Calls] = {}
        self._ops: dict[str, _Calls] = {}
        self._measured_from_s = 0.0
        self.errors = 0  # so far, warm-up included

    def measure_ops_from(self, seconds: float) -> None:
        """Count calls due before `seconds` (the warm-up) in the intervals only, not per operation."""
        self._measured_from_s = seconds

    def __call__(self, outcome: Outcome) -> None:
        self.errors += outcome.status != "OK"
        self._intervals.setdefault(int(outcome.due_s // self.interval_s), _Calls()).add(outcome)
        if outcome.due_s >= self._measured_from_s:
            self._ops.setdefault(self._op_of(outcome.index), _Calls()).add(outcome)

    def interval(self, i: int) -> dict[str, Any] | None:
        """Interval i (from i * interval_s), or None if no call was due in it."""
        calls = self._intervals.get(i)
        return None if calls is None else {"start_s": round(i * self.interval_s, 1), **calls.summary()}

    def intervals(self) -> list[dict[str, Any]]:
        return [row for i in sorted(self._intervals) if (row := self.interval(i)) is not None]

    def operations(self) -> dict[str, dict[str, Any]]:
        return {op: calls.summary() for op, calls in sorted(self._ops.items())}

    def after_warmup(self) -> dict[str, Any]:
        """Every call due after the warm-up together."""
        total = _Calls()
        for calls in self._ops.values():
            total.latencies_ms.extend(calls.latencies_ms)
            total.errors.update(calls.errors)
        return total.summary()


def _rss_mb(process: ManagedProcess) -> float:
    """RSS of the process and every descendant (bentoml's arbiter and worker, MLflow's workers)."""
    assert process.proc is not None, f"{process.name} was never started"
    root = psutil.Process(process.proc.pid)
    total = 0
    for member in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a worker that just exited
            total += member.memory_info().rss
    return round(total / 2**20, 1)


class MemoryProbe:
    """Resident memory (RSS, MB) of each watched process tree, read with psutil.

    A tree's RSS is the sum over its processes, so pages a parent shares with forked workers are
    counted once per process: the totals are larger than the memory used, but they grow only if
    the processes do. The tree is listed again at each reading, so a restarted worker is followed.
    """

    def __init__(self, processes: Mapping[str, ManagedProcess]) -> None:
        self._processes = dict(processes)

    def __call__(self) -> dict[str, float]:
        return {name: _rss_mb(process) for name, process in self._processes.items()}
