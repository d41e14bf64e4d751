"""Settings of the retraining runner and its flow runs, from the environment (and `.env`).

Settings shared with other services use those services' variable names, so one `.env` (or one
compose anchor) says it once: MONGODB_URI and MONGODB_DATABASE (the backend's), MLFLOW_TRACKING_URI
and FRUITSTACK_MODEL_REGISTERED_MODEL (the model service's), BACKEND_ADDRESS (the frontend's),
RETRAINING_DEPLOYMENT (the backend's too). The rest are RETRAINING_*. Prefect itself reads
PREFECT_API_URL; nothing here repeats it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from fruitstack_model.gate import GATE_METRICS
from fruitstack_model.registry import DEFAULT_TRACKING_URI, REGISTERED_MODEL
from pydantic import AliasChoices, Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Compose mounts the runner's own secret volume here: its service account's password, nothing else.
SECRETS_DIR = Path("/run/secrets")

FLOW_NAME = "retrain"
DEFAULT_DEPLOYMENT = f"{FLOW_NAME}/fruitstack-classifier"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RETRAINING_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        # Only when it exists: pydantic-settings warns about a missing secrets directory.
        secrets_dir=SECRETS_DIR if SECRETS_DIR.is_dir() else None,
    )

    deployment: str = Field(
        default=DEFAULT_DEPLOYMENT,
        description="The deployment as Prefect names it, FLOW/NAME (`prefect deployment run` takes it).",
    )
    interval_s: float = Field(default=300.0, gt=0, description="Seconds between scheduled runs.")
    mongodb_uri: str = Field(
        default="mongodb://localhost:27017", validation_alias=AliasChoices("MONGODB_URI")
    )
    mongodb_database: str = Field(
        default="fruitstack", min_length=1, validation_alias=AliasChoices("MONGODB_DATABASE")
    )
    mongodb_timeout_ms: int = Field(default=10_000, gt=0, description="Bound of one MongoDB operation.")
    tracking_uri: str = Field(
        default=DEFAULT_TRACKING_URI, validation_alias=AliasChoices("MLFLOW_TRACKING_URI")
    )
    registered_model: str = Field(
        default=REGISTERED_MODEL, validation_alias=AliasChoices("FRUITSTACK_MODEL_REGISTERED_MODEL")
    )
    backend_address: str = Field(default="localhost:50051", validation_alias=AliasChoices("BACKEND_ADDRESS"))
    backend_timeout_s: float = Field(
        default=30.0, gt=0, description="Deadline of Login and of ServeChampion."
    )
    # Switching the served model to the champion is all the runner asks of the backend, so it signs in
    # as the service account that may do only that (role retrainer), never as a human admin. Compose
    # keeps the password in the runner's own secret volume (/run/secrets/retrainer_password).
    backend_username: str = Field(
        default="retrainer",
        min_length=1,
        validation_alias=AliasChoices("RETRAINING_BACKEND_USERNAME", "RETRAINER_USERNAME"),
    )
    backend_password: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("RETRAINING_BACKEND_PASSWORD", "RETRAINER_PASSWORD"),
    )
    # The CA that signed the backend's certificate when the backend serves TLS (the frontend's name).
    backend_ca_file: FilePath | None = Field(default=None, validation_alias=AliasChoices("BACKEND_CA_FILE"))
    # The fixed holdout: the built-in dataset split as train.py splits it (its defaults), so every
    # run's candidate and champion are measured on the same built-in rows.
    seed: int = 42
    holdout: float = Field(default=0.25, gt=0, lt=1)
    feedback_holdout: float = Field(
        default=0.3,
        ge=0,
        lt=1,
        description="Share of the feedback rows kept for evaluation (the same rows in every run).",
    )
    max_feedback_rows: int = Field(default=100_000, gt=0, description="Newest feedback rows read at most.")
    gate_metric: str = Field(
        default="f1_macro",
        description="The gate's metric, as `train.py --gate-metric` (f1_macro or accuracy).",
    )
    gate_margin: float = Field(
        default=0.0, ge=0, description="The gate's margin, as `train.py --gate-margin`."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='LogisticRegression hyperparameters of the candidates, JSON: {"C": 0.5}.',
    )
    # Network steps (MongoDB, the registry's downloads, the backend) are retried this many times,
    # waiting retry_delay_s, then 2x, 4x, ... longer (Prefect task retries).
    retries: int = Field(default=3, ge=0, le=10)
    retry_delay_s: float = Field(default=2.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        flow, sep, name = self.deployment.partition("/")
        if flow != FLOW_NAME or not sep or not name or "/" in name:
            raise ValueError(
                f"RETRAINING_DEPLOYMENT must be {FLOW_NAME}/NAME (the flow is {FLOW_NAME!r}), "
                f"got {self.deployment!r}"
            )
        if self.gate_metric not in GATE_METRICS:
            raise ValueError(f"RETRAINING_GATE_METRIC must be one of {', '.join(GATE_METRICS)}")
        return self

    @property
    def deployment_name(self) -> str:
        return self.deployment.partition("/")[2]

    def retry_delays(self) -> list[float]:
        """Exponential backoff: retry_delay_s, 2x, 4x, ... (one delay per retry)."""
        return [self.retry_delay_s * 2**i for i in range(self.retries)]
