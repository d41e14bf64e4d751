"""Monitoring: drift per feature against the training data, live accuracy, predictions per minute.

Everything is re-read every refresh interval, so `nox -s traffic -- --shift FEATURE=AMOUNT` makes the
shifted feature turn red here within seconds of its window filling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from matplotlib.figure import Figure
from shiny import Inputs, Outputs, Session, module, reactive, render, req, ui
from shiny.types import SilentException
from shiny.ui import TagChild

from frontend.charts import accuracy_series, counts_series, distribution_figure, series_figure
from frontend.client import DriftReport, FruitstackClient, Health, LiveAccuracy, MonitoringStatus, TimePoint
from frontend.exceptions import user_message
from frontend.modules.status import outage_notice


@dataclass(frozen=True)
class Snapshot:
    report: DriftReport | None
    report_error: str | None  # e.g. no reference for this model, or the model service down
    accuracy: LiveAccuracy
    counts: tuple[TimePoint, ...]
    status: MonitoringStatus


def verdict(report: DriftReport) -> str:
    if report.window_size == 0:
        return "No predictions yet"
    drifted = [f.feature for f in report.features if f.drift]
    if report.labels is not None and report.labels.drift:
        drifted.append("predicted labels")
    return f"Drift: {', '.join(drifted)}" if drifted else "No drift"


def drift_table(report: DriftReport) -> TagChild:
    rows = []
    for f in report.features:
        rows.append(
            ui.tags.tr(
                ui.tags.td(f.feature),
                ui.tags.td(f.test),
                ui.tags.td(f"{f.statistic:.3f}", class_="text-end"),
                ui.tags.td(f"{f.threshold:.3f}", class_="text-end"),
                ui.tags.td(ui.span("drift", class_="badge text-bg-danger") if f.drift else "ok"),
                ui.tags.td(f"{f.window_size:,} / {f.reference_size:,}", class_="text-end"),
                data_feature=f.feature,
                data_verdict="drift" if f.drift else "ok",
            )
        )
    if report.labels is not None:
        labels = report.labels
        rows.append(
            ui.tags.tr(
                ui.tags.td("predicted labels"),
                ui.tags.td(labels.test),
                ui.tags.td(f"{labels.statistic:.3f}", class_="text-end"),
                ui.tags.td(f"{labels.threshold:.3f}", class_="text-end"),
                ui.tags.td(ui.span("drift", class_="badge text-bg-danger") if labels.drift else "ok"),
                ui.tags.td(f"{sum(labels.window_counts.values()):,}", class_="text-end"),
                data_feature="labels",
                data_verdict="drift" if labels.drift else "ok",
            )
        )
    head = ui.tags.tr(
        *(
            ui.tags.th(h, class_=c)
            for h, c in (
                ("feature", ""),
                ("test", ""),
                ("statistic", "text-end"),
                ("threshold", "text-end"),
                ("verdict", ""),
                ("window / reference rows", "text-end"),
            )
        )
    )
    return ui.tags.table(
        ui.tags.thead(head), ui.tags.tbody(*rows), class_="table table-sm align-middle", id="drift-table"
    )


@module.ui
def monitoring_ui() -> TagChild:
    return ui.TagList(
        ui.output_ui("notice"),
        ui.output_ui("boxes"),
        ui.layout_columns(
            ui.card(
                ui.card_header("Drift of the recent inputs against the training data"),
                ui.output_ui("table"),
                ui.output_text("window_text"),
            ),
            ui.card(
                ui.card_header("One feature: training data and recent predictions"),
                ui.output_ui("feature_choice"),
                ui.output_plot("distribution", height="300px"),
            ),
            col_widths=(7, 5),
        ),
        ui.layout_columns(
            ui.card(
                ui.card_header("Drift score (1 or more: drift)"), ui.output_plot("score_plot", height="220px")
            ),
            ui.card(
                ui.card_header("Live accuracy (predictions with feedback)"),
                ui.output_plot("accuracy_plot", height="220px"),
            ),
            ui.card(ui.card_header("Predictions per minute"), ui.output_plot("counts_plot", height="220px")),
            col_widths=(4, 4, 4),
        ),
    )


@module.server
def monitoring_server(
    input: Inputs,
    output: Outputs,
    session: Session,
    *,
    client: FruitstackClient,
    health: Callable[[], Health | None],
    refresh_s: float,
) -> None:
    latest: reactive.Value[Snapshot | None] = reactive.value(None)
    error: reactive.Value[str | None] = reactive.value(None)

    @reactive.extended_task
    async def load() -> Snapshot:
        async def report() -> DriftReport | str:
            try:
                return await client.drift_report()
            except Exception as exc:  # e.g. a model with no reference: the rest of the page still works
                return user_message(exc)

        drift, accuracy, counts, status = await asyncio.gather(
            report(), client.live_accuracy(), client.prediction_counts(), client.monitoring_status()
        )
        return Snapshot(
            report=None if isinstance(drift, str) else drift,
            report_error=drift if isinstance(drift, str) else None,
            accuracy=accuracy,
            counts=counts,
            status=status,
        )

    @reactive.effect
    def _poll() -> None:
        reactive.invalidate_later(refresh_s)
        with reactive.isolate():
            if load.status() != "running":
                load()

    @reactive.effect
    def _loaded() -> None:
        status = load.status()
        with reactive.isolate():
            if status == "success":
                error.set(None)
                latest.set(load.value())
            elif status == "error":
                error.set(user_message(load.error()))

    @reactive.calc
    def snapshot() -> Snapshot:
        snap = latest()
        if snap is None:
            raise SilentException()  # nothing loaded yet: outputs stay as they are
        return snap

    @reactive.calc
    def report() -> DriftReport:
        current = snapshot().report
        if current is None:
            raise SilentException()
        return current

    @render.ui
    def notice() -> TagChild:
        outage = outage_notice(health(), needs_store=True)
        if outage is not None:
            return outage
        snap = latest()
        message = error() or (snap.report_error if snap is not None else None)
        if message is None:
            return None
        return ui.div(f"Monitoring: {message}", class_="alert alert-warning py-2 mb-2", role="status")

    @render.ui
    def boxes() -> TagChild:
        snap = latest()
        if snap is None:
            return ui.p("Loading…", class_="text-body-secondary")
        report = snap.report
        version = report.model_version if report is not None else None
        served = [v for v in snap.accuracy.versions if v.model_version == version]
        accuracy = f"{served[0].accuracy:.1%}" if served and served[0].labelled else "no feedback yet"
        labelled = f"{served[0].labelled:,} labelled" if served else ""
        per_minute = snap.counts[-2].a + snap.counts[-2].b if len(snap.counts) >= 2 else 0
        drift_text = verdict(report) if report is not None else "unknown"
        drifting = report is not None and report.drift
        return ui.layout_column_wrap(
            ui.value_box(
                "Drift",
                ui.span(drift_text, id=session.ns("verdict")),
                f"model {report.model_version}" if report else "",
                theme="danger" if drifting else None,
            ),
            ui.value_box("Live accuracy", ui.span(accuracy, id=session.ns("accuracy")), labelled),
            ui.value_box("Predictions last minute", f"{per_minute:,}", f"{snap.status.logged:,} logged here"),
            ui.value_box(
                "Dropped log records",
                ui.span(f"{snap.status.dropped:,}", id=session.ns("dropped")),
                f"{snap.status.queued:,} queued",
                theme="warning" if snap.status.dropped else None,
            ),
            width="220px",
            fill=False,
        )

    @render.ui
    def table() -> TagChild:
        return drift_table(report())

    @render.text
    def window_text() -> str:
        current = report()
        return (
            f"The newest {current.window_size:,} predictions of model {current.model_version} against its "
            f"{current.reference_size:,} training rows; false-alarm rate {current.alpha:g} per report."
        )

    # The feature this module chose itself: until a person picks another, the choice follows the
    # newest report (a report rendered before the drift arrived must not pin the first feature).
    auto_chosen: list[str | None] = [None]

    @render.ui
    def feature_choice() -> TagChild:
        features = report().features
        names = [f.feature for f in features]
        req(names)
        with reactive.isolate():
            kept = input.feature() if "feature" in input else None
        drifting = [f.feature for f in features if f.drift]
        if kept in names and kept != auto_chosen[0]:
            selected = kept
        else:
            selected = drifting[0] if drifting else names[0]
            auto_chosen[0] = selected
        return ui.input_select("feature", "Feature", names, selected=selected)

    @render.plot(alt="The chosen feature's distribution in the training data and in recent predictions")
    def distribution() -> Figure:
        req("feature" in input)
        chosen = [f for f in report().features if f.feature == input.feature()]
        req(chosen)
        return distribution_figure(chosen[0])

    @render.plot(alt="The drift score of each periodic check")
    def score_plot() -> Figure:
        points = [(c.at, c.score) for c in reversed(snapshot().status.recent_checks)]
        return series_figure(points, ylabel="drift score", threshold=1.0)

    @render.plot(alt="Live accuracy per minute")
    def accuracy_plot() -> Figure:
        return series_figure(accuracy_series(snapshot().accuracy.over_time), ylabel="accuracy")

    @render.plot(alt="Predictions per minute")
    def counts_plot() -> Figure:
        return series_figure(counts_series(snapshot().counts), ylabel="predictions", kind="bar")
