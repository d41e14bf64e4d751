"""Model: what the model in service is (GetModel) and an "Update model" button (UpdateModel).

The server returns the loaded ModelInfo for its parent: the predict and bulk panels build their
forms and checks from it, so a model trained on another dataset needs no UI change.
"""

from __future__ import annotations

from collections.abc import Callable

from shiny import Inputs, Outputs, Session, module, reactive, render, ui
from shiny.ui import TagChild

from frontend.client import FruitstackClient, Health, ModelInfo, ModelUpdate, SignedIn
from frontend.exceptions import FailedPrecondition, NotSignedIn, user_message
from frontend.modules.auth import permission, permission_gate, update_gate
from frontend.modules.status import outage_notice


def _metric_label(name: str) -> str:
    return {"accuracy": "Accuracy", "f1_macro": "F1 (macro)"}.get(name, name.replace("_", " ").capitalize())


def describe_update(update: ModelUpdate) -> str:
    if update.changed:
        return f"Updated: {update.previous_version} → {update.current_version}"
    return (
        f"Already the newest: {update.current_version} → {update.current_version} (no newer model registered)"
    )


@module.ui
def model_ui() -> TagChild:
    return ui.layout_columns(
        ui.card(
            ui.card_header("Model in service"),
            ui.output_ui("notice"),
            ui.output_ui("summary"),
            ui.card_footer(
                ui.div(
                    permission_gate(
                        "update_gate",
                        ui.input_task_button(
                            "update", "Update model", label_busy="Updating…", class_="btn-sm"
                        ),
                    ),
                    ui.span(ui.output_text("update_result", inline=True), class_="ms-2"),
                    class_="d-flex align-items-center",
                )
            ),
        ),
        col_widths=(12,),
    )


@module.server
def model_server(
    input: Inputs,
    output: Outputs,
    session: Session,
    *,
    client: FruitstackClient,
    user: Callable[[], SignedIn | None],
    health: Callable[[], Health | None],
    refresh_s: float,
    retry_s: float,
) -> Callable[[], ModelInfo | None]:
    @reactive.effect
    async def _gate() -> None:
        allowed, reason = permission(user(), role="admin", action="update the model")
        await update_gate(session, "update_gate", allowed, reason)

    model: reactive.Value[ModelInfo | None] = reactive.value(None)
    load_error: reactive.Value[str | None] = reactive.value(None)
    # A failed precondition (no model, a refused artifact) needs a person; anything else clears by itself.
    needs_fixing = reactive.value(False)
    update_text: reactive.Value[str] = reactive.value("")
    reload = reactive.value(0)

    @reactive.extended_task
    async def load() -> ModelInfo:
        return await client.get_model()

    @reactive.effect
    def _poll() -> None:
        reload()
        with reactive.isolate():
            failing = load_error() is not None or model() is None
            if load.status() != "running":
                load()
        # Retry quickly while there is no model to show; otherwise just notice updates made elsewhere.
        reactive.invalidate_later(retry_s if failing else refresh_s)

    @reactive.effect
    def _loaded() -> None:
        status = load.status()
        with reactive.isolate():
            if status == "success":
                load_error.set(None)
                if load.value() != model():
                    model.set(load.value())
            elif status == "error":
                exc = load.error()
                # Not signed in (yet, or any more): the sign-in dialog says what to do.
                load_error.set(
                    "Sign in to see the model." if isinstance(exc, NotSignedIn) else user_message(exc)
                )
                needs_fixing.set(isinstance(exc, FailedPrecondition))

    @ui.bind_task_button(button_id="update")
    @reactive.extended_task
    async def update() -> ModelUpdate:
        return await client.update_model()

    @reactive.effect
    @reactive.event(input.update)
    def _update() -> None:
        update_text.set("")
        update()

    @reactive.effect
    def _updated() -> None:
        status = update.status()
        with reactive.isolate():
            if status == "success":
                update_text.set(describe_update(update.value()))
                reload.set(reload() + 1)
            elif status == "error":
                update_text.set(f"Update failed: {user_message(update.error())}")

    @render.text
    def update_result() -> str:
        return update_text()

    @render.ui
    def notice() -> TagChild:
        outage = outage_notice(health(), needs_model=True)
        message = load_error()
        if message is None or outage is not None:
            return outage
        if needs_fixing():
            return ui.div(
                f"The model cannot be served: {message} This needs fixing; retrying will not help.",
                class_="alert alert-danger py-2 mb-2",
                role="alert",
            )
        return ui.div(
            f"The model description cannot be loaded: {message} Retrying by itself.",
            class_="alert alert-warning py-2 mb-2",
            role="status",
        )

    @render.ui
    def summary() -> TagChild:
        info = model()
        if info is None:
            return ui.p("Loading the model description…", class_="text-body-secondary")
        trained = info.trained_at.strftime("%Y-%m-%d %H:%M UTC") if info.trained_at else "unknown"
        boxes = [
            ui.value_box("Model", info.name, f"dataset: {info.dataset}"),
            ui.value_box(
                "Version", ui.span(info.version, id=session.ns("version_value")), f"trained {trained}"
            ),
            *(
                ui.value_box(_metric_label(name), f"{value:.3f}", "holdout")
                for name, value in sorted(info.metrics.items())
            ),
        ]
        return ui.TagList(
            ui.layout_column_wrap(*boxes, width="220px", fill=False),
            ui.p(
                f"{len(info.features)} features: {', '.join(info.feature_names)}. "
                f"Classes: {', '.join(info.classes)}.",
                class_="text-body-secondary small mt-3 mb-0",
            ),
        )

    @reactive.calc
    def current() -> ModelInfo | None:
        return model()

    return current
