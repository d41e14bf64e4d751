"""The backend's settings, read from the environment (and a `.env` file) into one typed object."""

from __future__ import annotations

import secrets
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A well-known value (it is in this repository), so anyone could forge page tokens with it:
# refused outside LOCAL_MODE.
PLACEHOLDER_PAGE_TOKEN_SECRET = "change-me-local-only"


class Settings(BaseSettings):
    """Every setting of the backend; the environment variable is the upper-case field name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    grpc_host: str = Field(default="[::]", description="Address the gRPC server binds to.")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    mongodb_uri: str = Field(default="mongodb://localhost:27017", description="MongoDB connection string.")
    mongodb_database: str = Field(
        default="fruitstack", min_length=1, description="Database holding the fruits."
    )
    mongodb_timeout_ms: int = Field(
        default=2000,
        gt=0,
        description="Upper bound for one MongoDB operation (lower if the call's deadline is).",
    )
    mongodb_check_interval_s: float = Field(
        default=2.0, gt=0, description="How often MongoDB is pinged to keep the health status current."
    )
    model_url: str = Field(
        default="http://localhost:3000", description="Base URL of the BentoML model service."
    )
    model_timeout_s: float = Field(
        default=10.0, gt=0, description="Upper bound for one call to the model service."
    )
    model_check_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the model service's readiness is asked for its health status.",
    )
    prediction_log_enabled: bool = Field(
        default=True, description="Log every Predict (and summarise PredictBatch) for monitoring."
    )
    prediction_log_retention_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long logged predictions and summaries are kept (TTL)."
    )
    prediction_log_queue: int = Field(
        default=10_000,
        gt=0,
        description="Records waiting for MongoDB at most; beyond, records are dropped and counted.",
    )
    drift_window_predictions: int = Field(
        default=1000, gt=0, description="Newest predictions a drift report compares when asked for no window."
    )
    drift_alpha: float = Field(
        default=0.01, gt=0, lt=1, description="False-alarm rate of one drift report (split over its tests)."
    )
    drift_check_interval_s: float = Field(
        default=60.0, gt=0, description="How often drift is checked (and a drift event recorded on a turn)."
    )
    drift_bucket_rows: int = Field(
        default=1000, gt=0, description="Rows summarised into one stored drift bucket at most."
    )
    drift_bucket_s: float = Field(
        default=10.0, gt=0, description="Seconds one stored drift bucket covers at most."
    )
    prefect_api_url: str = Field(
        default="http://localhost:4200/api",
        description="Prefect's REST API, where the retraining runner serves its deployment.",
    )
    retraining_deployment: str = Field(
        default="retrain/fruitstack-classifier",
        pattern=r"^[^/]+/[^/]+$",
        description="The retraining deployment as Prefect names it, FLOW/NAME.",
    )
    prefect_timeout_s: float = Field(
        default=5.0, gt=0, description="Upper bound for one call to Prefect's API."
    )
    retrain_on_drift: bool = Field(
        default=True, description="Ask for a retraining run when a drift check records a drift event."
    )
    page_token_secret: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "HMAC key that signs ListFruits page tokens. Unset or empty: a random key per process,"
            " so tokens do not survive a restart nor pass between replicas."
        ),
    )
    local_mode: bool = Field(
        default=False, description="Allow the placeholder secret (local development only)."
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, how long in-flight calls may take to finish."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Logging level."
    )

    @field_validator("page_token_secret", mode="before")
    @classmethod
    def _random_secret_when_unset(cls, value: Any) -> Any:
        # A random key is safe (nobody can forge tokens) and lets `docker compose up` work on a
        # fresh clone; a fixed key is only needed for tokens that outlive one process.
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or not str(raw).strip():
            return SecretStr(secrets.token_urlsafe(32))
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Self:
        secret = self.page_token_secret.get_secret_value()
        if not self.local_mode and secret == PLACEHOLDER_PAGE_TOKEN_SECRET:
            raise ValueError("PAGE_TOKEN_SECRET is the placeholder; set a real secret or LOCAL_MODE=true")
        if len(secret) < 16:
            raise ValueError("PAGE_TOKEN_SECRET must be at least 16 characters")
        return self
