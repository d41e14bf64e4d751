"""A short soak in CI: the run `nox -s soak` makes, for one minute, its bounds asserted.

The stack is started once for the module (about a minute and a half on this 2-core machine: MLflow,
training, `bentoml serve`, the backend) and soaked once; each test reads the one report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench.soak.mix import WEIGHTS
from bench.soak.report import MEMORY_GROWTH_BOUND, print_report
from bench.soak.run import Options, main

MINUTES = 1.0
INTERVAL_S = 5.0
# Half the measured maximum, as the issue asks (ten minutes at half passed with 0 errors on
# 2026-12-03; README, "Soak").
CI_SHARE = 0.5
# nx-27017 is the local stand-in for MongoDB, not part of the product: its TTL emulation reads whole
# collections, so its RSS follows the data it holds (README, "Soak"; +2.6% in this minute at 358
# calls/s on 2026-12-02, +206% over ten minutes at 322), and the 10% bound cannot tell a leak from
# a busy minute there. Its growth is printed and held only to a bound against gross leaks; the leak
# the soak found in it (open drift cursors) has its own test (tests/backend/monitoring/test_repository.py).
STAND_IN = "MongoDB (nx-27017)"
STAND_IN_BOUND = 0.5


@dataclass(frozen=True)
class SoakRun:
    exit_code: int
    report: dict[str, Any]
    output_dir: Path


@pytest.fixture(scope="module")
def soak_run(tmp_path_factory: pytest.TempPathFactory) -> SoakRun:
    output_dir = tmp_path_factory.mktemp("soak")
    args = ["--minutes", str(MINUTES), "--interval", str(INTERVAL_S), "--share", str(CI_SHARE)]
    args += ["--output-dir", str(output_dir)]
    exit_code = main(args)
    return SoakRun(exit_code, json.loads((output_dir / "soak.json").read_text()), output_dir)


def test_the_tables_are_printed_into_the_ci_log(
    soak_run: SoakRun, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print_report(soak_run.report, Console(width=130))


def test_no_call_failed(soak_run: SoakRun) -> None:
    errors = soak_run.report["errors"]
    assert errors["total"] == 0, soak_run.report["failures"]
    assert all(row["errors"] == {} for row in soak_run.report["intervals"])


def test_no_process_of_the_product_grew_by_the_bound_after_the_warm_up(soak_run: SoakRun) -> None:
    processes = soak_run.report["memory"]["processes"]
    assert set(processes) == {"backend", "model service", STAND_IN, "MLflow"}
    growth = {name: row["growth"] for name, row in processes.items()}
    assert all(g < MEMORY_GROWTH_BOUND for name, g in growth.items() if name != STAND_IN), growth
    assert growth[STAND_IN] < STAND_IN_BOUND, growth


def test_the_mix_ran_on_the_clock_at_the_share_of_the_measured_maximum(soak_run: SoakRun) -> None:
    report = soak_run.report
    assert report["maximum"]["throughput"] > 0
    assert report["soak"]["rate"] == pytest.approx(CI_SHARE * report["maximum"]["throughput"])
    assert report["soak"]["calls"] == int(report["soak"]["rate"] * 60 * MINUTES)
    assert len(report["intervals"]) == int(60 * MINUTES / INTERVAL_S)
    assert set(report["operations"]) == set(WEIGHTS)  # every kind of call, after the warm-up too
    assert report["options"]["warmup_s"] == Options(minutes=MINUTES).warmup_s == 15
    # The baseline is read at the warm-up's end, then a reading every interval up to the end.
    times = [sample["t_s"] for sample in report["memory"]["samples"]]
    assert times == sorted(times)
    assert times[-1] >= 60 * MINUTES


def test_the_verdict_is_the_exit_code_and_json_and_plot_are_written(soak_run: SoakRun) -> None:
    report = soak_run.report
    # Nothing but the stand-in's memory may have failed it (see STAND_IN above).
    assert all(failure.startswith(f"{STAND_IN}: memory grew") for failure in report["failures"])
    assert report["passed"] is (report["failures"] == [])
    assert soak_run.exit_code == (0 if report["passed"] else 1)
    assert (soak_run.output_dir / "soak.png").read_bytes().startswith(b"\x89PNG")
