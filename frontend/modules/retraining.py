"""Retraining: a card for the Model tab with the last runs, the next scheduled one and "Retrain now".

Retraining runs in Prefect (pipelines/); the backend's RetrainingService reports on it and asks for
runs, so this card works the same whether a run came from the schedule, a drift event or the
button. While Prefect is down the card says so and shows the outcomes recorded before.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from shiny import Inputs, Outputs, Session, module, reactive, render, ui
from shiny.ui import TagChild

from frontend.client import (
    FruitstackClient,
    RetrainAsked,
    RetrainingOutcome,
    RetrainingRun,
    RetrainingStatus,
    SignedIn,
)
from frontend.exceptions import user_message
from frontend.modules.auth import permission, permission_gate, update_gate

# What Prefect calls a run that waits for the run going to end (the deployment's one slot).
AWAITING_SLOT = "AwaitingConcurrencySlot"
_FINISHED = {"Completed", "Failed", "Crashed"}


def ago(at: datetime, now: datetime) -> str:
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def outcome_text(outcome: RetrainingOutcome) -> str:
    """ "not promoted, 0.93 < 0.95"; "promoted version 3, 0.97 ≥ 0.93"; "skipped: ..."; "failed: ..."."""
    if outcome.result in ("promoted", "not promoted") and outcome.candidate_score is not None:
        head = outcome.result
        if outcome.result == "promoted" and outcome.candidate_version:
            head = f"promoted version {outcome.candidate_version}"
        if outcome.champion_score is None:
            return f"{head}, {outcome.metric} {outcome.candidate_score:.2f} (no champion to compare with)"
        sign = "≥" if outcome.candidate_score >= outcome.champion_score else "<"
        return f"{head}, {outcome.candidate_score:.2f} {sign} {outcome.champion_score:.2f}"
    if outcome.result == "skipped":
        return "skipped: no new training data since the last version"
    return f"{outcome.result or 'unknown'}: {outcome.detail}"


def state_text(run: RetrainingRun) -> str:
    if run.outcome is not None:
        return outcome_text(run.outcome)
    if run.state == AWAITING_SLOT:
        return "queued: starts when the run going ends"
    if run.state in ("Scheduled", "Late", "Pending"):
        return f"{run.state.lower()}: waiting for the runner"
    if run.state == "Running":
        return "running"
    return f"{run.state.lower()}: {run.state_message}" if run.state_message else run.state.lower()


def last_retraining_text(status: RetrainingStatus, now: datetime) -> str:
    """The newest run that finished: "Last retraining 2 min ago: not promoted, 0.93 < 0.95"."""
    for run in status.runs:
        if run.state in _FINISHED and (run.outcome is not None or run.state != "Completed"):
            when = run.finished_at or run.started_at
            at = f" {ago(when, now)}" if when else ""
            return f"Last retraining{at} ({run.trigger}): {state_text(run)}"
    return "No retraining has run yet."


def next_run_text(status: RetrainingStatus, now: datetime) -> str:
    if not status.prefect_reachable or not status.schedule_interval_s:
        return "No scheduled runs." if status.prefect_reachable else ""
    every = f"every {duration(status.schedule_interval_s)}"
    if status.next_run_at is None:
        return f"Scheduled {every}; the next run is not planned yet."
    seconds = int((status.next_run_at - now).total_seconds())
    if seconds < 0:
        return f"Next scheduled run was due {ago(status.next_run_at, now)} ({every}): is the runner running?"
    return f"Next scheduled run in {duration(seconds)} ({every})."


def describe_asked(asked: RetrainAsked) -> str:
    after = f" It starts when run {asked.running.name} ends (one at a time)." if asked.running else ""
    if asked.merged:
        return (
            f"Run {asked.run.name} was already waiting to start, so it serves this ask: it trains on"
            f" everything recorded until it starts.{after}"
        )
    if asked.running is not None:
        return f"Asked for run {asked.run.name}; it is queued.{after}"
    return f"Asked for run {asked.run.name}; the runner starts it within seconds."


def runs_table(status: RetrainingStatus, *, prefect_ui_url: str) -> TagChild:
    if not status.runs:
        return ui.p("No runs yet.", class_="text-body-secondary small mb-0")
    rows = []
    for run in status.runs:
        when = run.finished_at or run.started_at or run.scheduled_at
        outcome = run.outcome
        rows.append(
            ui.tags.tr(
                ui.tags.td(when.strftime("%Y-%m-%d %H:%M:%S") if when else ""),
                ui.tags.td(
                    ui.a(
                        run.name,
                        href=f"{prefect_ui_url.rstrip('/')}/runs/flow-run/{run.id}",
                        target="_blank",
                        rel="noopener",
                        title="this run in the Prefect UI",
                    )
                ),
                ui.tags.td(run.trigger, title=run.reason or None),
                ui.tags.td(state_text(run), class_="small"),
                ui.tags.td(str(outcome.feedback_rows) if outcome else "", class_="text-end"),
                ui.tags.td(duration(outcome.duration_s) if outcome else "", class_="text-end"),
                data_run=run.id,
                data_state=run.state,
            )
        )
    head = ui.tags.tr(
        ui.tags.th("When (UTC)"),
        ui.tags.th("Run"),
        ui.tags.th("Trigger"),
        ui.tags.th("Outcome"),
        ui.tags.th("Feedback rows", class_="text-end"),
        ui.tags.th("Took", class_="text-end"),
    )
    return ui.tags.table(
        ui.tags.thead(head),
        ui.tags.tbody(*rows),
        class_="table table-sm align-middle mb-0",
        id="retraining-runs-table",
    )


@module.ui
def retraining_ui() -> TagChild:
    return ui.card(
        ui.card_header("Retraining"),
        ui.output_ui("notice"),
        ui.output_ui("summary"),
        ui.output_ui("runs"),
        ui.card_footer(
            ui.div(
                permission_gate(
                    "retrain_gate",
                    ui.input_task_button(
                        "retrain", "Retrain now", label_busy="Asking…", class_="btn-sm text-nowrap"
                    ),
                ),
                ui.span(ui.output_text("retrain_result", inline=True), class_="ms-2"),
                class_="d-flex align-items-center",
            )
        ),
    )


@module.server
def retraining_server(
    input: Inputs,
    output: Outputs,
    session: Session,
    *,
    client: FruitstackClient,
    user: Callable[[], SignedIn | None],
    refresh_s: float,
    prefect_ui_url: str,
) -> None:
    @reactive.effect
    async def _gate() -> None:
        allowed, reason = permission(user(), role="admin", action="start a retraining")
        await update_gate(session, "retrain_gate", allowed, reason)

    status: reactive.Value[RetrainingStatus | None] = reactive.value(None)
    load_error: reactive.Value[str | None] = reactive.value(None)
    asked_text = reactive.value("")
    reload = reactive.value(0)

    @reactive.extended_task
    async def load() -> RetrainingStatus:
        return await client.retraining_status()

    @reactive.effect
    def _poll() -> None:
        reload()
        with reactive.isolate():
            if load.status() != "running":
                load()
        reactive.invalidate_later(refresh_s)

    @reactive.effect
    def _loaded() -> None:
        state = load.status()
        with reactive.isolate():
            if state == "success":
                load_error.set(None)
                status.set(load.value())
            elif state == "error":
                load_error.set(user_message(load.error()))

    @ui.bind_task_button(button_id="retrain")
    @reactive.extended_task
    async def ask() -> RetrainAsked:
        return await client.retrain()

    @reactive.effect
    @reactive.event(input.retrain)
    def _ask() -> None:
        asked_text.set("")
        ask()

    @reactive.effect
    def _asked() -> None:
        state = ask.status()
        with reactive.isolate():
            if state == "success":
                asked_text.set(describe_asked(ask.value()))
                reload.set(reload() + 1)
            elif state == "error":
                asked_text.set(f"Retraining not started: {user_message(ask.error())}")

    @render.text
    def retrain_result() -> str:
        return asked_text()

    @render.ui
    def notice() -> TagChild:
        message = load_error()
        current = status()
        if message is not None:
            text = f"The retraining status cannot be loaded: {message} Retrying by itself."
        elif current is not None and current.prefect_error:
            # The backend's sentence names Prefect and what failed ("Prefect at ... is unavailable").
            text = (
                f"{current.prefect_error.rstrip('.')}. Predictions and fruits are not affected; the runs "
                "below are those recorded before."
            )
        elif current is not None and current.history_error:
            text = f"The recorded outcomes cannot be read: {current.history_error}"
        else:
            return None
        return ui.div(text, class_="alert alert-warning py-2 mb-2", role="status")

    @render.ui
    def summary() -> TagChild:
        current = status()
        if current is None:
            return ui.p("Loading the retraining status…", class_="text-body-secondary")
        now = datetime.now(UTC)
        return ui.div(
            ui.p(last_retraining_text(current, now), class_="mb-1", id=session.ns("last_retraining")),
            ui.p(
                next_run_text(current, now),
                " ",
                ui.a("Prefect UI", href=prefect_ui_url, target="_blank", rel="noopener"),
                class_="text-body-secondary small mb-2",
                id=session.ns("next_run"),
            ),
        )

    @render.ui
    def runs() -> TagChild:
        current = status()
        if current is None:
            return None
        return runs_table(current, prefect_ui_url=prefect_ui_url)
