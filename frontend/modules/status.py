"""Service status: polls the backend's health service and shows one badge per service in the navbar.

The server returns the latest Health so the other panels can say plainly what is down; they
recover by themselves because the poll never stops.
"""

from __future__ import annotations

from collections.abc import Callable

from shiny import Inputs, Outputs, Session, module, reactive, render, ui
from shiny.ui import Tag, TagChild

from frontend.client import FruitstackClient, Health

# (label, tooltip) per badge, in the order shown.
_BADGES = (
    ("backend", "Backend", "the gRPC backend this app talks to"),
    ("fruit_store", "Fruit store", "MongoDB, behind the backend"),
    ("model_service", "Model", "the BentoML model service, behind the backend"),
)


def _badge(label: str, tooltip: str, up: bool | None) -> Tag:
    state, colour = {True: ("up", "success"), False: ("down", "danger"), None: ("unknown", "secondary")}[up]
    return ui.span(
        ui.span(class_="status-dot"),
        f"{label}: {state}",
        class_=f"badge rounded-pill text-bg-{colour} me-1",
        title=f"{tooltip} is {state}",
        data_service=label.lower().replace(" ", "-"),
        data_state=state,
    )


def badge_row(health: Health | None) -> TagChild:
    if health is None:
        return ui.span("checking services…", class_="text-body-secondary small")
    values = {
        "backend": health.backend,
        "fruit_store": health.fruit_store,
        "model_service": health.model_service,
    }
    return ui.TagList(*(_badge(label, tip, values[key]) for key, label, tip in _BADGES))


def outage_notice(health: Health | None, *, needs_store: bool = False, needs_model: bool = False) -> TagChild:
    """A plain sentence about what this panel cannot do right now, or nothing when all it needs is up."""
    if health is None:
        return None
    if not health.backend:
        text = "The backend cannot be reached, so this panel cannot load. It will recover by itself."
    elif needs_store and health.fruit_store is False:
        text = "The fruit store (MongoDB) is unavailable right now. This panel will recover by itself."
    elif needs_model and health.model_service is False:
        text = (
            "The model service is unavailable right now, so predictions cannot be made. "
            "This panel will recover by itself."
        )
    else:
        return None
    return ui.div(text, class_="alert alert-warning py-2 mb-2", role="status")


@module.ui
def status_ui() -> TagChild:
    return ui.output_ui("badges", inline=True)


@module.server
def status_server(
    input: Inputs, output: Outputs, session: Session, *, client: FruitstackClient, poll_interval_s: float
) -> Callable[[], Health | None]:
    latest: reactive.Value[Health | None] = reactive.value(None)

    @reactive.extended_task
    async def check() -> Health:
        return await client.health()

    @reactive.effect
    def _poll() -> None:
        reactive.invalidate_later(poll_interval_s)
        with reactive.isolate():
            # A slow check is not stacked up behind another; the next tick tries again.
            if check.status() != "running":
                check()

    @reactive.effect
    def _store() -> None:
        status = check.status()
        if status == "success":
            health = check.value()
        elif status == "error":
            # client.health() reports an unreachable backend as a Health; an exception means the same.
            health = Health(backend=False, fruit_store=None, model_service=None)
        else:
            return
        with reactive.isolate():
            if health != latest():
                latest.set(health)

    @render.ui
    def badges() -> TagChild:
        return badge_row(latest())

    @reactive.calc
    def current() -> Health | None:
        return latest()

    return current
