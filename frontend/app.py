"""The Shiny app: a navbar page with one tab per feature module, built from Settings by create_app().

Run from the repository root: `shiny run --port 8080 --factory frontend.app:create_app`
(or `python -m frontend`, which reads HOST and PORT from the settings).
"""

from __future__ import annotations

from shiny import App, Inputs, Outputs, Session, ui

from frontend.client import Credentials, FruitstackClient
from frontend.config import Settings
from frontend.modules.auth import PAGE_SCRIPT, auth_server, auth_ui
from frontend.modules.bulk import bulk_server, bulk_ui
from frontend.modules.fruits import fruits_server, fruits_ui
from frontend.modules.model import model_server, model_ui
from frontend.modules.monitoring import monitoring_server, monitoring_ui
from frontend.modules.predict import predict_server, predict_ui
from frontend.modules.retraining import retraining_server, retraining_ui
from frontend.modules.status import status_server, status_ui
from frontend.modules.users import users_server, users_ui

_CSS = """
.status-dot { display: inline-block; width: .5em; height: .5em; border-radius: 50%;
              background: currentColor; margin-right: .35em; vertical-align: .1em; }
.bslib-value-box .value-box-value { font-size: 1.4rem; }
fieldset.permission-gate { min-width: 0; }
fieldset.permission-gate[disabled] { opacity: .65; }
"""


def app_ui() -> ui.Tag:
    return ui.page_navbar(
        ui.nav_panel("Fruits", fruits_ui("fruits"), value="fruits"),
        ui.nav_panel("Predict", predict_ui("predict"), value="predict"),
        ui.nav_panel("Bulk scoring", bulk_ui("bulk"), value="bulk"),
        ui.nav_panel("Model", model_ui("model"), retraining_ui("retraining"), value="model"),
        ui.nav_panel("Monitoring", monitoring_ui("monitoring"), value="monitoring"),
        ui.nav_panel("Users", users_ui("users"), value="users"),
        ui.nav_spacer(),
        ui.nav_control(status_ui("status")),
        ui.nav_control(auth_ui("auth")),
        id="tabs",
        title="fruitstack",
        window_title="fruitstack",
        header=ui.TagList(ui.tags.style(_CSS), ui.tags.script(PAGE_SCRIPT)),
        fillable=False,
    )


def create_app(settings: Settings | None = None, *, client: FruitstackClient | None = None) -> App:
    """Build the app; without arguments the settings come from the environment (the entry point)."""
    settings = settings or Settings()
    shared = client or FruitstackClient(
        settings.backend_address,
        timeout_s=settings.rpc_timeout_s,
        bulk_timeout_s=settings.bulk_timeout_s,
        ca_file=settings.backend_ca_file,
    )

    def server(input: Inputs, output: Outputs, session: Session) -> None:
        # This browser session's sign-in, and a client that sends its token (and no other).
        credentials = Credentials()
        client = shared.for_session(credentials)
        auth = auth_server("auth", client=client, credentials=credentials)
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
        bulk_server("bulk", client=client, model=model, health=health, chunk_rows=settings.bulk_chunk_rows)
        monitoring_server("monitoring", client=client, health=health, refresh_s=settings.monitoring_refresh_s)
        users_server("users", client=client, credentials=credentials, user=auth.user)
        retraining_server(
            "retraining",
            client=client,
            user=auth.user,
            refresh_s=settings.retraining_refresh_s,
            prefect_ui_url=settings.prefect_ui_url,
        )

    return App(app_ui(), server)
