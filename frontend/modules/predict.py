"""Predict: a form generated from the model's features, the prediction, and the query among the training data.

Every input is a slider bounded by the feature's training range and starting at its mean, so the
form follows whatever model is in service.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from matplotlib.figure import Figure
from shiny import Inputs, Outputs, Session, module, reactive, render, req, ui
from shiny.types import SilentException
from shiny.ui import TagChild

from frontend.charts import sample_figure
from frontend.client import (
    FeatureRange,
    Feedback,
    FruitstackClient,
    Health,
    ModelInfo,
    Prediction,
    SignedIn,
)
from frontend.exceptions import user_message
from frontend.modules.auth import permission, permission_gate
from frontend.modules.status import outage_notice


def slider_step(feature: FeatureRange) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about a hundred positions over the range."""
    span = feature.max - feature.min
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / 100
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def slider_value(feature: FeatureRange, step: float) -> float:
    """The mean, on the step grid, inside the range."""
    value = round(feature.mean / step) * step
    return min(max(value, feature.min), feature.max)


def feature_input_id(index: int) -> str:
    # By position: feature names such as "sepal length (cm)" are not valid input ids.
    return f"feature_{index}"


def probability_bars(prediction: Prediction) -> TagChild:
    rows = []
    for name, p in sorted(prediction.probabilities.items(), key=lambda kv: -kv[1]):
        pct = 100 * p
        rows.append(
            ui.div(
                ui.div(
                    ui.span(name, class_="fw-semibold" if name == prediction.label else ""),
                    ui.span(f"{pct:.1f}%", class_="text-body-secondary"),
                    class_="d-flex justify-content-between small",
                ),
                ui.div(
                    ui.div(
                        class_="progress-bar" + ("" if name == prediction.label else " bg-secondary"),
                        style=f"width: {pct:.1f}%",
                    ),
                    class_="progress mb-2",
                    role="progressbar",
                    aria_label=f"probability of {name}",
                    aria_valuenow=f"{pct:.1f}",
                    aria_valuemin="0",
                    aria_valuemax="100",
                    style="height: 0.6rem",
                ),
                class_="probability",
                data_class=name,
            )
        )
    return ui.TagList(*rows)


@module.ui
def predict_ui() -> TagChild:
    return ui.layout_columns(
        ui.card(
            ui.card_header("Features"),
            ui.output_ui("form"),
            ui.card_footer(ui.input_task_button("predict", "Predict", label_busy="Predicting…")),
        ),
        ui.div(
            ui.card(
                ui.card_header("Prediction"),
                ui.output_ui("notice"),
                ui.output_ui("result"),
            ),
            ui.card(
                ui.card_header("Your input among the training data"),
                ui.output_ui("axes"),
                ui.output_plot("scatter", height="360px"),
            ),
        ),
        col_widths=(4, 8),
    )


@module.server
def predict_server(
    input: Inputs,
    output: Outputs,
    session: Session,
    *,
    client: FruitstackClient,
    model: Callable[[], ModelInfo | None],
    health: Callable[[], Health | None],
    user: Callable[[], SignedIn | None],
) -> None:
    # Kept apart from the model so that a new version with the same features keeps the user's values.
    features: reactive.Value[tuple[FeatureRange, ...]] = reactive.value(())

    @reactive.effect
    def _features() -> None:
        info = model()
        if info is None:
            return
        with reactive.isolate():
            if info.features != features():
                features.set(info.features)

    @render.ui
    def form() -> TagChild:
        current = features()
        if not current:
            return ui.p("Waiting for the model description…", class_="text-body-secondary")
        sliders = []
        for i, feature in enumerate(current):
            step = slider_step(feature)
            sliders.append(
                ui.input_slider(
                    feature_input_id(i),
                    feature.name,
                    min=feature.min,
                    max=feature.max,
                    value=slider_value(feature, step),
                    step=step,
                    width="100%",
                )
            )
        return ui.TagList(*sliders)

    @reactive.calc
    def query() -> dict[str, float]:
        current = features()
        req(current)
        values: dict[str, float] = {}
        for i, feature in enumerate(current):
            input_id = feature_input_id(i)
            req(input_id in input)
            values[feature.name] = float(input[input_id]())
        return values

    @ui.bind_task_button(button_id="predict")
    @reactive.extended_task
    async def predict(values: Mapping[str, float]) -> Prediction:
        return await client.predict(features=values)

    @reactive.effect
    @reactive.event(input.predict)
    def _predict() -> None:
        predict(query())

    @render.ui
    def notice() -> TagChild:
        return outage_notice(health(), needs_model=True)

    @render.ui
    def result() -> TagChild:
        status = predict.status()
        if status == "initial":
            return ui.p("Set the features and press Predict.", class_="text-body-secondary")
        if status == "error":
            return ui.div(
                f"Prediction failed: {user_message(predict.error())}",
                class_="alert alert-danger py-2",
                role="alert",
            )
        prediction = predict.result()
        feedback: TagChild = None
        if prediction.prediction_id:
            allowed, reason = permission(user(), role="editor", action="send feedback")
            feedback = permission_gate(
                "feedback_gate",
                ui.input_radio_buttons(
                    "feedback_label",
                    "Was this right? The true class is:",
                    choices=list(prediction.probabilities),
                    selected=prediction.label,
                    inline=True,
                ),
                ui.div(
                    ui.input_task_button(
                        "send_feedback",
                        "Send feedback",
                        label_busy="Sending…",
                        class_="btn-sm btn-outline-primary",
                    ),
                    ui.span(ui.output_text("feedback_result", inline=True), class_="ms-2 small"),
                    class_="d-flex align-items-center",
                ),
                reason=reason,
                allowed=allowed,
            )
            feedback = ui.div(feedback, class_="border-top pt-2 mt-3")
        return ui.TagList(
            ui.div(
                ui.span("Predicted class", class_="text-body-secondary small d-block"),
                ui.span(prediction.label, class_="fs-3 fw-semibold", id=session.ns("label_value")),
                class_="mb-3",
            ),
            probability_bars(prediction),
            ui.p(
                "Model version ",
                ui.code(prediction.model_version, id=session.ns("version_value")),
                class_="text-body-secondary small mt-2 mb-0",
            ),
            feedback,
        )

    @ui.bind_task_button(button_id="send_feedback")
    @reactive.extended_task
    async def send_feedback(prediction_id: str, label: str) -> Feedback:
        return await client.record_feedback(prediction_id=prediction_id, label=label)

    @reactive.effect
    @reactive.event(input.send_feedback)
    def _send_feedback() -> None:
        if predict.status() == "success" and "feedback_label" in input:
            send_feedback(predict.result().prediction_id, input.feedback_label())

    @render.text
    def feedback_result() -> str:
        status = send_feedback.status()
        if status == "success":
            sent = send_feedback.result()
            right = "right" if sent.correct else "wrong"
            again = ", replacing your earlier answer" if sent.replaced else ""
            return (
                f"Thank you: recorded {sent.label} (the model said {sent.predicted_label}: {right}{again})."
            )
        if status == "error":
            return f"Feedback failed: {user_message(send_feedback.error())}"
        return ""

    @render.ui
    def axes() -> TagChild:
        names = [f.name for f in features()]
        req(len(names) >= 2)
        return ui.layout_columns(
            ui.input_select("x", "Horizontal axis", names, selected=names[0]),
            ui.input_select("y", "Vertical axis", names, selected=names[1]),
            col_widths=(6, 6),
        )

    @render.plot(alt="Training sample on two features, with the current input as a star")
    def scatter() -> Figure:
        info = model()
        req(info is not None and "x" in input and "y" in input)
        assert info is not None
        x, y = input.x(), input.y()
        req(x in info.feature_names and y in info.feature_names)
        try:
            point: dict[str, float] | None = query()
        except SilentException:
            point = None  # the form is still being drawn; show the data alone
        return sample_figure(info.training_sample, x=x, y=y, classes=info.classes, query=point)
