"""`python -m frontend`: serve the app on the HOST and PORT of the settings."""

from __future__ import annotations

import shiny

from frontend.config import Settings


def main() -> None:
    settings = Settings()
    if shiny.run_app is None:  # only in Pyodide, where there is no server to run
        raise SystemExit("shiny.run_app is unavailable in this environment")
    # create_app() is the factory so that the settings are read in the server process, not at import.
    # dev_mode=False: Shiny's development mode adds an inline script (and shows errors to the page).
    shiny.run_app(
        "frontend.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        app_dir=".",
        dev_mode=False,
    )


if __name__ == "__main__":
    main()
