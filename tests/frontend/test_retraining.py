"""The retraining card's sentences, from the client's dataclasses (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from frontend.client import RetrainAsked, RetrainingOutcome, RetrainingRun, RetrainingStatus
from frontend.modules.retraining import (
    AWAITING_SLOT,
    describe_asked,
    last_retraining_text,
    next_run_text,
    outcome_text,
    state_text,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def outcome(result: str, candidate: float | None = 0.93, champion: float | None = 0.95) -> RetrainingOutcome:
    return RetrainingOutcome(
        result=result,
        detail="the training data is unchanged since version 3" if result == "skipped" else "why",
        metric="f1_macro",
        candidate_score=candidate,
        champion_score=champion,
        candidate_version="4",
        champion_version="3",
        served_version="3",
        duration_s=35.0,
        feedback_rows=28,
        train_rows=140,
        eval_rows=46,
    )


def run(
    state: str = "Completed", result: RetrainingOutcome | None = None, *, message: str = ""
) -> RetrainingRun:
    return RetrainingRun(
        id="r1",
        name="quiet-heron",
        trigger="drift",
        reason="",
        state=state,
        state_message=message,
        scheduled_at=NOW - timedelta(minutes=3),
        started_at=NOW - timedelta(minutes=3),
        finished_at=NOW - timedelta(minutes=2, seconds=5),
        outcome=result,
    )


def status(*runs: RetrainingRun, interval_s: float = 300, next_in_s: float | None = 170) -> RetrainingStatus:
    return RetrainingStatus(
        deployment="retrain/fruitstack-classifier",
        prefect_reachable=True,
        prefect_error="",
        schedule_interval_s=interval_s,
        next_run_at=None if next_in_s is None else NOW + timedelta(seconds=next_in_s),
        runs=runs,
        history_error="",
    )


def test_outcomes_read_as_the_gate_decided() -> None:
    assert outcome_text(outcome("not promoted")) == "not promoted, 0.93 < 0.95"
    assert outcome_text(outcome("promoted", 0.97, 0.93)) == "promoted version 4, 0.97 ≥ 0.93"
    assert outcome_text(outcome("promoted", 0.97, None)) == (
        "promoted version 4, f1_macro 0.97 (no champion to compare with)"
    )
    assert outcome_text(outcome("skipped")) == "skipped: no new training data since the last version"
    assert outcome_text(outcome("failed")) == "failed: why"


def test_the_last_finished_run_is_the_headline() -> None:
    going = run("Running")
    done = run("Completed", outcome("not promoted"))

    assert last_retraining_text(status(going, done), NOW) == (
        "Last retraining 2 min ago (drift): not promoted, 0.93 < 0.95"
    )
    assert last_retraining_text(status(going), NOW) == "No retraining has run yet."


def test_a_queued_run_says_when_it_starts() -> None:
    assert state_text(run(AWAITING_SLOT)) == "queued: starts when the run going ends"
    assert state_text(run("Scheduled")) == "scheduled: waiting for the runner"


def test_the_next_scheduled_run() -> None:
    assert next_run_text(status(), NOW) == "Next scheduled run in 3 min (every 5 min)."
    assert next_run_text(status(next_in_s=-120), NOW) == (
        "Next scheduled run was due 2 min ago (every 5 min): is the runner running?"
    )
    assert next_run_text(status(interval_s=0, next_in_s=None), NOW) == "No scheduled runs."


def test_asking_while_a_run_goes_says_it_is_queued_or_merged() -> None:
    asked = run("Scheduled")
    going = RetrainingRun(**{**run("Running").__dict__, "name": "brave-otter"})

    assert describe_asked(RetrainAsked(run=asked, running=None)) == (
        "Asked for run quiet-heron; the runner starts it within seconds."
    )
    assert describe_asked(RetrainAsked(run=asked, running=going)) == (
        "Asked for run quiet-heron; it is queued. It starts when run brave-otter ends (one at a time)."
    )
    assert describe_asked(RetrainAsked(run=asked, running=going, merged=True)) == (
        "Run quiet-heron was already waiting to start, so it serves this ask: it trains on everything"
        " recorded until it starts. It starts when run brave-otter ends (one at a time)."
    )
