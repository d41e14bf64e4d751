"""The Shiny app: a sign-in page, then a navbar with one tab per feature module; built by create_app().

Run from the repository root: `shiny run --port 8080 --factory frontend.app:create_app`
(or `python -m frontend`, which reads HOST and PORT from the settings).

Nothing but the sign-in form reaches a browser that is not signed in: the page is one output that
the server fills with the form, or with the app once the session has signed in; the feature
modules (and their backend calls) start only then. Sign-out ends the session (modules/auth.py).
"""

from __future__ import annotations

from pathlib import Path

from shiny import App, Inputs, Outputs, Session, reactive, render, ui
from shiny.ui import TagChild
from starlette.types import ASGIApp

from frontend.client import Credentials, FruitstackClient
from frontend.config import Settings
from frontend.middleware import BoundedUploads, SecurityHeaders, UploadGate
from frontend.modules.auth import Auth, auth_server, sign_in_ui, who_ui
from frontend.modules.bulk import bulk_server, bulk_ui
from frontend.modules.fruits import fruits_server, fruits_ui
from frontend.modules.model import model_server, model_ui
from frontend.modules.monitoring import monitoring_server, monitoring_ui
from frontend.modules.predict import predict_server, predict_ui
from frontend.modules.retraining import retraining_server, retraining_ui
from frontend.modules.status import status_server, status_ui
from frontend.modules.users import users_server, users_ui

WWW = Path(__file__).parent / "www"


def app_ui() -> ui.Tag:
    """What every browser gets: the app's stylesheet and script, and the one output the server fills."""
    return ui.page_fluid(
        ui.include_css(WWW / "fruitstack.css"),
        ui.output_ui("page"),
        ui.include_js(WWW / "fruitstack.js"),
        title="fruitstack",
        class_="px-0",
    )


def signed_in_ui(settings: Settings) -> TagChild:
    """The app, rendered only into a signed-in session."""
    return ui.navset_bar(
        ui.nav_panel("Fruits", fruits_ui("fruits"), value="fruits"),
        ui.nav_panel("Predict", predict_ui("predict"), value="predict"),
        ui.nav_panel(
            "Bulk scoring", bulk_ui("bulk", max_upload_bytes=settings.max_upload_bytes), value="bulk"
        ),
        ui.nav_panel("Model", model_ui("model"), retraining_ui("retraining"), value="model"),
        ui.nav_panel("Monitoring", monitoring_ui("monitoring"), value="monitoring"),
        ui.nav_panel("Users", users_ui("users"), value="users"),
        ui.nav_spacer(),
        ui.nav_control(status_ui("status")),
        ui.nav_control(who_ui("auth")),
        id="tabs",
        title="fruitstack",
    )


def start_modules(settings: Settings, client: FruitstackClient, auth: Auth, credentials: Credentials) -> None:
    """The feature modules' servers: called once per session, when it first signs in."""
    health = status_server("status", client=client, poll_interval_s=settings.poll_interval_s)
    model = model_server(
        "model",
        client=client,
        user=auth.user,
        health=health,
        refresh_s=settings.model_refresh_s,
        retry_s=settings.poll_interval_s,
        mlflow_ui_url=settings.mlflow_ui_url,
    )
    fruits_server(
        "fruits",
        client=client,
        user=auth.user,
        page_size=settings.fruits_page_size,
        poll_interval_s=settings.poll_interval_s,
    )
    predict_server("predict", client=client, model=model, health=health, user=auth.user)
    bulk_server(
        "bulk",
        client=client,
        model=model,
        health=health,
        chunk_rows=settings.bulk_chunk_rows,
        max_upload_bytes=settings.max_upload_bytes,
    )
    monitoring_server("monitoring", client=client, health=health, refresh_s=settings.monitoring_refresh_s)
    users_server("users", client=client, credentials=credentials, user=auth.user)
    retraining_server(
        "retraining",
        client=client,
        user=auth.user,
        refresh_s=settings.retraining_refresh_s,
        prefect_ui_url=settings.prefect_ui_url,
    )


def create_app(
    settings: Settings | None = None,
    *,
    client: FruitstackClient | None = None,
    upload_gate: UploadGate | None = None,
) -> ASGIApp:
    """Build the app; without arguments the settings come from the environment (the entry point).

    The Shiny app comes wrapped in its middleware: security headers on every response, and
    uploads refused before sign-in or past MAX_UPLOAD_BYTES (frontend/middleware.py). The server
    keeps `upload_gate` (a new one unless given) to the sessions that are signed in.
    """
    settings = settings or Settings()
    shared = client or FruitstackClient(
        settings.backend_address,
        timeout_s=settings.rpc_timeout_s,
        bulk_timeout_s=settings.bulk_timeout_s,
        ca_file=settings.backend_ca_file,
    )
    uploads = upload_gate or UploadGate()

    def server(input: Inputs, output: Outputs, session: Session) -> None:
        # This browser session's sign-in, and a client that sends its token (and no other).
        credentials = Credentials()
        client = shared.for_session(credentials)
        auth = auth_server("auth", client=client, credentials=credentials)
        started = False

        @reactive.effect
        def _on_sign_in() -> None:
            nonlocal started
            signed_in = auth.user() is not None
            if signed_in:
                uploads.allow(session.id)
            else:
                uploads.revoke(session.id)
            if signed_in and not started:
                started = True
                with reactive.isolate():
                    start_modules(settings, client, auth, credentials)

        session.on_ended(lambda: uploads.revoke(session.id))

        @render.ui
        def page() -> TagChild:
            return sign_in_ui("auth") if auth.user() is None else signed_in_ui(settings)

    app = App(app_ui(), server)
    return SecurityHeaders(BoundedUploads(app, gate=uploads, max_bytes=settings.max_upload_bytes))
