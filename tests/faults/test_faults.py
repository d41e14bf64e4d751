"""Faults on the composed stack, each during load (`nox -s faults`; marker `docker`).

One stack for the module (docker-compose.yml as shipped, hardening included). For each fault: load
starts (AddFruit and Predict callers, 2 s deadlines), the fault is injected and held, then repaired;
the test waits until both kinds of call succeed again, lets the load run on briefly, and lists
every stored fruit. Its table says, per phase, what was sent, acknowledged and failed by status,
and how many acknowledged fruits were found afterwards; the assertions are the promises of the
README's "What survives faults": 0 acknowledged fruits lost, only the statuses documented for that
fault while it lasts, every call answered within its deadline, once the fault is noticed every
refused call refused fast (within half its deadline), and recovery within a bound.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import grpc
import pytest
from fruitstack.v1 import retraining_pb2, retraining_pb2_grpc
from rich.console import Console
from rich.table import Table

from tests.faults.load import ADD_FRUIT, PREDICT, Load, codes, first_success_after, iter_phases, slowest
from tests.fixtures.stack import (
    ComposeStack,
    admin_channel,
    all_fruit_ids,
    compose_stack,
    eventually,
    mean_row,
    wait_for_backend,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

DEADLINE_S = 2.0
# A call's own time may exceed its deadline by the client's scheduling on two shared cores.
LATENESS_S = 0.5
# Once the backend has noticed a fault, it refuses at once: a refused call must not wait out most of
# its deadline ("fail fast with UNAVAILABLE"). The slowest refusals allowed are a killed model
# service's: the backend caches its address for 10 s, and the first calls and each breaker trial
# wait out the model client's connect bound (CONNECT_TIMEOUT_S, 0.5 s) on the gone container.
FAIL_FAST_S = 1.0
WARMUP_S = 3.0
HOLD_S = 8.0
AFTER_S = 3.0
RECOVERY_BOUND_S = 90.0

# MONGODB_HEARTBEAT_MS + MONGODB_TIMEOUT_MS (compose's defaults) and a call's own deadline.
NOTICING_MONGODB_S = 1.0 + 2.0 + DEADLINE_S

OK = frozenset({"OK"})
DOWN = frozenset({"UNAVAILABLE"})


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    inject: Callable[[ComposeStack], None]
    repair: Callable[[ComposeStack], None]
    # The statuses each kind of call may end with while the fault lasts.
    during: dict[str, frozenset[str]]
    # Also allowed in the first seconds of the fault, before the backend has noticed it.
    noticing: dict[str, frozenset[str]] = field(default_factory=dict)
    noticing_s: float = 0.0


def compose(*args: str) -> Callable[[ComposeStack], None]:
    def run(stack: ComposeStack) -> None:
        stack.compose(*args, timeout=120)

    return run


def backend_network(action: str) -> Callable[[ComposeStack], None]:
    def run(stack: ComposeStack) -> None:
        command = ["docker", "network", action, stack.network("data"), stack.container("backend")]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    return run


def restart_backend(stack: ComposeStack) -> None:
    stack.compose("start", "backend", timeout=120)
    wait_for_backend(stack)


FAULTS = [
    Fault(
        "mongodb-paused",
        "MongoDB frozen (`docker compose pause mongo`), then thawed",
        compose("pause", "mongo"),
        compose("unpause", "mongo"),
        during={ADD_FRUIT: DOWN, PREDICT: OK},
        # Until the driver's monitor gives the frozen server up (its next heartbeat, 1 s, times
        # out after 2 s), a write waits out its bound, and may answer just after its deadline.
        noticing={ADD_FRUIT: frozenset({"DEADLINE_EXCEEDED"})},
        noticing_s=NOTICING_MONGODB_S,
    ),
    Fault(
        "mongodb-killed",
        "MongoDB SIGKILLed (`docker compose kill mongo`), then started",
        compose("kill", "mongo"),
        compose("start", "mongo"),
        during={ADD_FRUIT: DOWN, PREDICT: OK},
    ),
    Fault(
        "backend-cut-off-from-mongodb",
        "the backend's container disconnected from the `data` network, then reconnected",
        backend_network("disconnect"),
        backend_network("connect"),
        during={ADD_FRUIT: DOWN, PREDICT: OK},
        noticing={ADD_FRUIT: frozenset({"DEADLINE_EXCEEDED"})},
        noticing_s=NOTICING_MONGODB_S,
    ),
    Fault(
        "model-killed",
        "the model service SIGKILLed (`docker compose kill model`), then started",
        compose("kill", "model"),
        compose("start", "model"),
        during={ADD_FRUIT: OK, PREDICT: DOWN},
    ),
    Fault(
        "model-stalled",
        "the model service frozen (`docker compose pause model`): a model that never answers",
        compose("pause", "model"),
        compose("unpause", "model"),
        # Calls in flight when it froze wait out their deadline; once the health watcher sees it
        # down (a few seconds), the breaker fails calls at once.
        during={ADD_FRUIT: OK, PREDICT: DOWN},
        noticing={PREDICT: frozenset({"DEADLINE_EXCEEDED"})},
        noticing_s=6.0,
    ),
    Fault(
        "backend-killed",
        "the backend SIGKILLed under the write load (`docker compose kill backend`), then started",
        compose("kill", "backend"),
        restart_backend,
        during={ADD_FRUIT: DOWN, PREDICT: DOWN},
    ),
    Fault(
        "mlflow-killed",
        "the MLflow registry SIGKILLed, then started: the model service keeps serving its champion",
        compose("kill", "mlflow"),
        compose("start", "mlflow"),
        during={ADD_FRUIT: OK, PREDICT: OK},
    ),
    Fault(
        "prefect-killed",
        "the Prefect server and the retraining runner SIGKILLed, then started",
        compose("kill", "prefect", "retrain-runner"),
        compose("start", "prefect", "retrain-runner"),
        during={ADD_FRUIT: OK, PREDICT: OK},
    ),
]


@dataclass
class Report:
    fault: str
    what: str
    phases: dict[str, dict[str, dict[str, int]]]
    slowest_s: dict[str, float]
    acknowledged: int
    found: int
    lost: int
    recovery_s: float


REPORTS: list[Report] = []


@pytest.fixture(scope="module")
def fault_stack() -> Iterator[ComposeStack]:
    with compose_stack("faults") as stack:
        yield stack
        write_reports(stack)


@pytest.fixture(scope="module")
def channel(fault_stack: ComposeStack) -> Iterator[grpc.Channel]:
    with admin_channel(fault_stack) as channel:
        yield channel


def run_fault(stack: ComposeStack, channel: grpc.Channel, fault: Fault) -> tuple[Report, Load, float]:
    load = Load(channel, features=mean_row(channel), deadline_s=DEADLINE_S)
    with load.running():
        time.sleep(WARMUP_S)
        began_at = time.monotonic()
        fault.inject(stack)
        # From here the fault holds (the docker command has returned); calls started while it was
        # being injected may end either way.
        inject_at = time.monotonic()
        time.sleep(HOLD_S)
        repair_at = time.monotonic()
        fault.repair(stack)
        recovery_s = first_success_after(load, repair_at, (ADD_FRUIT, PREDICT), timeout=RECOVERY_BOUND_S)
        time.sleep(AFTER_S)
        end = time.monotonic()
    found = eventually(lambda: all_fruit_ids(channel), timeout=60, what="ListFruits after the fault")
    acknowledged = load.acknowledged()
    phases = {
        phase: {kind: dict(codes(load.between(start, stop, kind))) for kind in (ADD_FRUIT, PREDICT)}
        for phase, start, stop in iter_phases(began_at, repair_at, repair_at + recovery_s, end)
    }
    report = Report(
        fault=fault.name,
        what=fault.what,
        phases=phases,
        slowest_s={kind: round(slowest(load.since(0.0, kind)), 3) for kind in (ADD_FRUIT, PREDICT)},
        acknowledged=len(acknowledged),
        found=len(acknowledged & found),
        lost=len(acknowledged - found),
        recovery_s=round(recovery_s, 1),
    )
    return report, load, inject_at


def print_report(report: Report) -> None:
    table = Table(title=f"{report.fault}: {report.what}", title_justify="left")
    for heading in ("phase", "call", "sent", "acknowledged", "failed (by status)"):
        table.add_column(heading)
    for phase, kinds in report.phases.items():
        for kind, counted in kinds.items():
            failed = ", ".join(f"{code} {n}" for code, n in sorted(counted.items()) if code != "OK")
            table.add_row(phase, kind, str(sum(counted.values())), str(counted.get("OK", 0)), failed or "-")
    console = Console(width=140)
    console.print(table)
    console.print(
        f"acknowledged fruits {report.acknowledged}, found afterwards {report.found}, lost {report.lost}; "
        f"recovered {report.recovery_s:.1f} s after the repair; slowest call "
        f"{max(report.slowest_s.values()):.2f} s (deadline {DEADLINE_S:.0f} s)\n"
    )


def write_reports(stack: ComposeStack) -> None:
    if REPORTS:
        out = stack.log_dir / "faults.json"
        out.write_text(json.dumps([asdict(r) for r in REPORTS], indent=2))


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_under_load(
    fault_stack: ComposeStack, channel: grpc.Channel, fault: Fault, capsys: pytest.CaptureFixture[str]
) -> None:
    report, load, inject_at = run_fault(fault_stack, channel, fault)
    REPORTS.append(report)
    with capsys.disabled():
        print()
        print_report(report)

    assert report.lost == 0, f"{report.lost} acknowledged fruits were not found after {fault.name}"
    assert report.acknowledged > 0
    for kind in (ADD_FRUIT, PREDICT):
        # Everything answered by its deadline: none waited longer than it was allowed to.
        assert report.slowest_s[kind] <= DEADLINE_S + LATENESS_S, (kind, report.slowest_s)
        # Before and after the fault, everything succeeded.
        for phase in ("before", "after"):
            assert set(report.phases[phase][kind]) <= OK, (phase, kind, report.phases[phase][kind])
        # While it lasted, only the documented statuses.
        noticed_at = inject_at + fault.noticing_s
        allowed = fault.during[kind]
        for call in load.between(inject_at, inject_at + HOLD_S, kind):
            statuses = allowed | (
                fault.noticing.get(kind, frozenset()) if call.started < noticed_at else frozenset()
            )
            assert call.code in statuses, (
                f"{kind} started {call.started - inject_at:.1f} s into {fault.name} ended {call.code}; "
                f"documented: {sorted(statuses)}"
            )
        refused = [c for c in load.between(noticed_at, inject_at + HOLD_S, kind) if c.code != "OK"]
        slow = [f"{c.seconds:.2f} s" for c in refused if c.seconds > FAIL_FAST_S]
        assert not slow, (
            f"{kind}: {len(slow)} of {len(refused)} refused after {fault.name} was noticed took {slow[:5]}"
        )
    assert report.recovery_s <= RECOVERY_BOUND_S


def test_retrain_says_prefect_is_unavailable_while_it_is_down(
    fault_stack: ComposeStack, channel: grpc.Channel
) -> None:
    retraining = retraining_pb2_grpc.RetrainingServiceStub(channel)
    fault_stack.compose("stop", "prefect", "retrain-runner", timeout=120)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            retraining.Retrain(retraining_pb2.RetrainRequest(reason="faults"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Prefect" in (refused.value.details() or "")
    finally:
        fault_stack.compose("start", "prefect", "retrain-runner", timeout=120)
