"""Settings of the model service, read from FRUITSTACK_MODEL_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRUITSTACK_MODEL_", env_file=".env", extra="ignore")

    # Where the workers of one store agree on the version to serve (see live_model.py). Empty means
    # next to the model store: $BENTOML_HOME/fruitstack/.
    state_dir: Path | None = None
    # Requests with at least this many rows are scored in a thread so that small requests keep
    # being answered meanwhile; below it the thread hand-off costs more than the scoring.
    thread_rows: int = 20_000
