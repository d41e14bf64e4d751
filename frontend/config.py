"""Settings of the frontend, read from the environment (and `.env`) once, at the entry point."""

from __future__ import annotations

from pydantic import Field, FilePath
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the frontend can be told; environment variable names are the field names in capitals."""

    # The shared .env also holds other services' settings, hence extra="ignore".
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    backend_address: str = Field(
        default="localhost:50051", description="host:port of the backend's gRPC server"
    )
    backend_ca_file: FilePath | None = Field(
        default=None,
        description="CA certificate (PEM) to trust for the backend's TLS; unset: plaintext gRPC",
    )
    host: str = Field(default="127.0.0.1", description="interface `python -m frontend` listens on")
    port: int = Field(default=8080, ge=0, le=65535, description="port `python -m frontend` listens on")
    poll_interval_s: float = Field(
        default=2.0, gt=0, description="how often the fruit list and the service status are refreshed"
    )
    model_refresh_s: float = Field(
        default=30.0, gt=0, description="how often the model description is re-read while it loads fine"
    )
    rpc_timeout_s: float = Field(default=10.0, gt=0, description="deadline of one short backend call")
    bulk_timeout_s: float = Field(default=900.0, gt=0, description="deadline of a whole bulk-scoring stream")
    bulk_chunk_rows: int = Field(
        default=20_000, ge=1, le=100_000, description="rows per PredictBatch request chunk"
    )
    max_upload_bytes: int = Field(
        default=16_000_000,
        ge=1,
        description=(
            "largest CSV a signed-in user may upload for bulk scoring (bytes); larger uploads are"
            " refused before they are stored or read"
        ),
    )
    fruits_page_size: int = Field(default=10, ge=1, le=1000, description="fruits per page of the list")
    monitoring_refresh_s: float = Field(
        default=5.0, gt=0, description="how often the Monitoring tab re-reads drift, accuracy and counts"
    )
    mlflow_ui_url: str = Field(
        default="http://localhost:5000",
        description="the MLflow UI as the user's browser reaches it, for links to versions and runs",
    )
    retraining_refresh_s: float = Field(
        default=5.0, gt=0, description="how often the Model tab re-reads the retraining status"
    )
    prefect_ui_url: str = Field(
        default="http://localhost:4200",
        description="the Prefect UI as the user's browser reaches it, for links to retraining runs",
    )
