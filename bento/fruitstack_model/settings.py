"""Settings of the model service, read from FRUITSTACK_MODEL_* environment variables (and MLflow's)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fruitstack_model.registry import DEFAULT_TRACKING_URI, REGISTERED_MODEL


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRUITSTACK_MODEL_", env_file=".env", extra="ignore")

    # The MLflow tracking server holding the registry; MLflow's own variable, so that train.py, the
    # service and the mlflow CLI agree on it.
    tracking_uri: str = Field(default=DEFAULT_TRACKING_URI, validation_alias="MLFLOW_TRACKING_URI")
    # The registered model whose `champion` alias is served.
    registered_model: str = REGISTERED_MODEL
    # Seconds between looks at the champion alias; each worker follows a promotion by itself within
    # this time (a /reload reaches every worker at once). 0 turns the polling off.
    poll_interval_s: float = Field(default=5.0, ge=0)
    # Upper bound of one call to the registry. MLflow's default is 120 s with 7 retries, which would
    # make a /reload against a stopped registry hang for minutes instead of answering 503.
    registry_timeout_s: int = Field(default=5, ge=1)
    # Where the workers of one store agree on the version to serve (see live_model.py) and take
    # turns writing to the store (model_store.py). Empty means next to the model store:
    # $BENTOML_HOME/fruitstack/.
    state_dir: Path | None = None
    # Requests with at least this many rows are scored in a thread so that small requests keep
    # being answered meanwhile; below it the thread hand-off costs more than the scoring.
    thread_rows: int = 20_000
