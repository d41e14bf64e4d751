"""Model: the model in service (GetModel), the registry's versions (ListModelVersions), updates and rollbacks.

The server returns the loaded ModelInfo for its parent: the predict and bulk panels build their
forms and checks from it, so a model trained on another dataset needs no UI change.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure
from shiny import Inputs, Outputs, Session, module, reactive, render, req, ui
from shiny.ui import TagChild

from frontend.charts import versions_figure
from frontend.client import (
    FruitstackClient,
    Health,
    ModelInfo,
    ModelUpdate,
    ModelVersion,
    ModelVersions,
    SignedIn,
)
from frontend.exceptions import FailedPrecondition, NotSignedIn, user_message
from frontend.modules.auth import permission, permission_gate, update_gate
from frontend.modules.status import outage_notice

PLOTTED_METRIC = "f1_macro"


def _metric_label(name: str) -> str:
    return {"accuracy": "Accuracy", "f1_macro": "F1 (macro)"}.get(name, name.replace("_", " ").capitalize())


def describe_update(update: ModelUpdate) -> str:
    if update.changed:
        return f"Updated: {update.previous_version} → {update.current_version}"
    version = update.current_version
    return f"Already serving the champion: {version} → {version} (no newer model promoted)"


def version_url(mlflow_ui_url: str, name: str, version: str) -> str:
    """The version's page in the MLflow UI, which links on to the run that trained it."""
    return f"{mlflow_ui_url.rstrip('/')}/#/models/{name}/versions/{version}"


def gate_text(version: ModelVersion) -> str:
    gate = version.gate
    if gate.reason:
        return gate.reason
    return {"manual": "made champion by hand", "": "not gated"}.get(gate.decision, gate.decision)


def versions_table(registered: ModelVersions, *, mlflow_ui_url: str) -> TagChild:
    metrics = ("accuracy", "f1_macro")
    head = ui.tags.tr(
        ui.tags.th("Version"),
        ui.tags.th("Registered"),
        *(ui.tags.th(_metric_label(m), class_="text-end") for m in metrics),
        ui.tags.th("Aliases"),
        ui.tags.th("Promotion gate"),
    )
    rows = []
    for v in registered.versions:
        served = v.version == registered.served_version
        badges = [ui.span(alias, class_="badge text-bg-warning me-1") for alias in v.aliases]
        if served:
            badges.append(ui.span("served", class_="badge text-bg-success me-1"))
        rows.append(
            ui.tags.tr(
                ui.tags.td(
                    ui.a(
                        v.version,
                        href=version_url(mlflow_ui_url, registered.name, v.version),
                        target="_blank",
                        rel="noopener",
                        title="this version and its run in the MLflow UI",
                    )
                ),
                ui.tags.td(v.created_at.strftime("%Y-%m-%d %H:%M") if v.created_at else ""),
                *(
                    ui.tags.td(f"{v.metrics[m]:.3f}" if m in v.metrics else "", class_="text-end")
                    for m in metrics
                ),
                ui.tags.td(*badges),
                ui.tags.td(gate_text(v), class_="small"),
                data_version=v.version,
                class_="table-warning" if v.is_champion else "",
            )
        )
    return ui.tags.table(
        ui.tags.thead(head),
        ui.tags.tbody(*rows),
        class_="table table-sm align-middle mb-2",
        id="model-versions-table",
    )


def pin_text(registered: ModelVersions) -> str | None:
    """What a pin means, with what waits behind it; None when nothing is pinned."""
    pin = registered.pin
    if pin is None:
        return None
    when = f" on {pin.pinned_at:%Y-%m-%d %H:%M} UTC" if pin.pinned_at else ""
    held = [v.version for v in registered.versions if v.gate.pinned_version]
    waiting = (
        f" Held back, though the gate would promote {'it' if len(held) == 1 else 'them'}: "
        f"version{'s' if len(held) > 1 else ''} {', '.join(held)}."
        if held
        else ""
    )
    return (
        f"Version {pin.version} is pinned by {pin.pinned_by or 'an admin'}{when}: retraining runs still"
        f" train, gate and register versions, but promote none until an admin unpins.{waiting}"
    )


def pin_notice_ui(registered: ModelVersions) -> TagChild:
    text = pin_text(registered)
    if text is None:
        return None
    return ui.div(text, class_="alert alert-info py-2 mb-2", role="status")


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
                            "update", "Update to champion", label_busy="Updating…", class_="btn-sm"
                        ),
                    ),
                    ui.span(ui.output_text("update_result", inline=True), class_="ms-2"),
                    class_="d-flex align-items-center",
                )
            ),
        ),
        ui.card(
            ui.card_header("Registered versions"),
            ui.output_ui("versions_notice"),
            ui.output_ui("pin_notice"),
            ui.output_ui("versions"),
            ui.output_plot("versions_plot", height="260px"),
            ui.card_footer(
                ui.div(
                    permission_gate(
                        "rollback_gate",
                        ui.div(
                            ui.output_ui("rollback_choice"),
                            ui.input_action_button(
                                "rollback", "Serve this version", class_="btn-sm btn-outline-danger"
                            ),
                            ui.input_task_button(
                                "unpin",
                                "Unpin",
                                label_busy="Unpinning…",
                                class_="btn-sm btn-outline-secondary",
                            ),
                            class_="d-flex align-items-end gap-2",
                        ),
                    ),
                    ui.span(ui.output_text("unpin_result", inline=True), class_="ms-2"),
                    class_="d-flex align-items-end",
                )
            ),
        ),
        col_widths=(12, 12),
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
    mlflow_ui_url: str,
) -> Callable[[], ModelInfo | None]:
    @reactive.effect
    async def _gate() -> None:
        allowed, reason = permission(user(), role="admin", action="update the model")
        await update_gate(session, "update_gate", allowed, reason)
        allowed, reason = permission(user(), role="admin", action="serve another version")
        await update_gate(session, "rollback_gate", allowed, reason)

    model: reactive.Value[ModelInfo | None] = reactive.value(None)
    load_error: reactive.Value[str | None] = reactive.value(None)
    # A failed precondition (no model, a refused artifact) needs a person; anything else clears by itself.
    needs_fixing = reactive.value(False)
    registered: reactive.Value[ModelVersions | None] = reactive.value(None)
    versions_error: reactive.Value[str | None] = reactive.value(None)
    update_text: reactive.Value[str] = reactive.value("")
    reload = reactive.value(0)

    @reactive.extended_task
    async def load() -> tuple[ModelInfo, ModelVersions | BaseException]:
        info = await client.get_model()
        try:
            versions: ModelVersions | BaseException = await client.list_model_versions()
        except Exception as exc:  # the registry may be down while the model is served: show both
            versions = exc
        return info, versions

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
                info, versions = load.value()
                load_error.set(None)
                if info != model():
                    model.set(info)
                if isinstance(versions, BaseException):
                    versions_error.set(user_message(versions))
                else:
                    versions_error.set(None)
                    if versions != registered():
                        registered.set(versions)
            elif status == "error":
                exc = load.error()
                # Not signed in (yet, or any more): the sign-in dialog says what to do.
                load_error.set(
                    "Sign in to see the model." if isinstance(exc, NotSignedIn) else user_message(exc)
                )
                needs_fixing.set(isinstance(exc, FailedPrecondition))

    @ui.bind_task_button(button_id="update")
    @reactive.extended_task
    async def update(version: str) -> ModelUpdate:
        return await client.update_model(version=version)

    @reactive.effect
    @reactive.event(input.update)
    def _update() -> None:
        update_text.set("")
        update("")

    @reactive.effect
    @reactive.event(input.rollback)
    def _confirm_rollback() -> None:
        choice = input.rollback_version() if "rollback_version" in input else None
        versions = registered()
        if not choice or versions is None:
            update_text.set("Choose a version to serve first.")
            return
        ui.modal_show(
            ui.modal(
                ui.p(
                    f"Serve version {choice} instead of {versions.served_version or 'the current one'}? "
                    f"Version {choice} becomes the champion (recorded as your decision), and every "
                    "prediction from then on uses it. It is pinned: retraining runs still train and "
                    "register versions, but promote none until an admin unpins."
                ),
                title="Serve another version",
                footer=ui.TagList(
                    ui.modal_button("Cancel"),
                    ui.input_action_button(
                        "confirm_rollback", f"Serve version {choice}", class_="btn-danger"
                    ),
                ),
                easy_close=True,
            )
        )

    @reactive.effect
    @reactive.event(input.confirm_rollback)
    def _rollback() -> None:
        ui.modal_remove()
        update_text.set("")
        update(input.rollback_version())

    unpin_text: reactive.Value[str] = reactive.value("")

    @ui.bind_task_button(button_id="unpin")
    @reactive.extended_task
    async def unpin() -> str:
        return await client.unpin_model()

    @reactive.effect
    @reactive.event(input.unpin)
    def _unpin() -> None:
        unpin_text.set("")
        unpin()

    @reactive.effect
    def _unpinned() -> None:
        status = unpin.status()
        with reactive.isolate():
            if status == "success":
                was = unpin.value()
                unpin_text.set(
                    f"Unpinned version {was}: the next retraining run may promote a better one."
                    if was
                    else "Nothing was pinned."
                )
                reload.set(reload() + 1)
            elif status == "error":
                unpin_text.set(f"Unpin failed: {user_message(unpin.error())}")

    @render.text
    def unpin_result() -> str:
        return unpin_text()

    @render.ui
    def pin_notice() -> TagChild:
        current = registered()
        return None if current is None else pin_notice_ui(current)

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
            info = model()
            if outage is None and info is not None and not info.registry_reachable:
                return ui.div(
                    f"The model registry cannot be reached ({info.registry_error}). Version "
                    f"{info.version} is still served; updates and rollbacks wait until it is back.",
                    class_="alert alert-warning py-2 mb-2",
                    role="status",
                )
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
        aliases = f"{', '.join(info.aliases)}; " if info.aliases else ""
        boxes = [
            ui.value_box("Model", info.name, f"dataset: {info.dataset}"),
            ui.value_box(
                "Version",
                ui.span(info.version, id=session.ns("version_value")),
                f"{aliases}trained {trained}",
            ),
            *(
                ui.value_box(_metric_label(name), f"{value:.3f}", "holdout")
                for name, value in sorted(info.metrics.items())
                if name in ("accuracy", "f1_macro")
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

    @render.ui
    def versions_notice() -> TagChild:
        message = versions_error()
        if message is None:
            return None
        return ui.div(
            f"The registered versions cannot be listed: {message} Retrying by itself.",
            class_="alert alert-warning py-2 mb-2",
            role="status",
        )

    @render.ui
    def versions() -> TagChild:
        current = registered()
        if current is None:
            return ui.p("Loading the registered versions…", class_="text-body-secondary")
        return versions_table(current, mlflow_ui_url=mlflow_ui_url)

    @render.plot(alt="The holdout F1 (macro) of every registered version, the champion starred")
    def versions_plot() -> Figure:
        current = registered()
        req(current is not None)
        assert current is not None
        return versions_figure(current.versions, metric=PLOTTED_METRIC)

    @render.ui
    def rollback_choice() -> TagChild:
        current = registered()
        choices = [v.version for v in current.versions] if current is not None else []
        with reactive.isolate():
            kept = input.rollback_version() if "rollback_version" in input else None
        selected = kept if kept in choices else (choices[0] if choices else None)
        return ui.input_select("rollback_version", "Version", choices=choices, selected=selected, width="8em")

    @reactive.calc
    def current() -> ModelInfo | None:
        return model()

    return current
