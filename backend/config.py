"""The backend's settings, read from the environment (and a `.env` file) into one typed object."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, FilePath, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Well-known values (they are in this repository), so anyone could forge tokens or sign in with
# them: refused outside LOCAL_MODE.
PLACEHOLDER_PAGE_TOKEN_SECRET = "change-me-local-only"
PLACEHOLDER_AUTH_TOKEN_SECRET = "change-me-local-only-token-signing-key"
# The documented first-admin password of `nox -s dev` (scripts/dev.py).
PLACEHOLDER_ADMIN_PASSWORD = "fruitstack-local-admin"
# The retraining runner's password under `nox -s dev` (scripts/dev.py).
PLACEHOLDER_RETRAINER_PASSWORD = "fruitstack-local-retrainer"
# HS256 keys shorter than the hash (32 bytes) weaken it (RFC 7518 section 3.2).
AUTH_TOKEN_SECRET_MIN = 32
FIRST_ADMIN_PASSWORD_MIN = 12

# Secret files: where Docker puts compose `secrets:` and where docker-compose.yml mounts the
# generated ones. Each file is named after its setting (auth_token_secret, page_token_secret,
# first_admin_password); an environment variable of the same name wins over the file.
SECRETS_DIR = Path("/run/secrets")
# Service accounts' passwords (retrainer_password): a volume of their own, because the retraining
# runner mounts it too, and must not see the backend's keys in SECRETS_DIR.
SERVICE_SECRETS_DIR = Path("/run/service-secrets")


def is_loopback(host: str) -> bool:
    """Whether a bind address (127.0.0.1, [::1], localhost) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface


class Settings(BaseSettings):
    """Every setting of the backend; the environment variable is the upper-case field name."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        frozen=True,
        # Only those that exist: pydantic-settings warns about a missing secrets directory.
        secrets_dir=[d for d in (SECRETS_DIR, SERVICE_SECRETS_DIR) if d.is_dir()] or None,
    )

    grpc_host: str = Field(
        default="[::]",
        description="Address the gRPC server binds to; with LOCAL_MODE, a loopback one (127.0.0.1).",
    )
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
    mongodb_heartbeat_ms: int = Field(
        default=1000,
        ge=500,  # pymongo's minimum
        description="How often the MongoDB driver checks each server (a frozen one is noticed within "
        "this plus MONGODB_TIMEOUT_MS; calls then fail fast with UNAVAILABLE).",
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
    drift_report_cache_s: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a drift report answers identical requests (0: computed for each one).",
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
    auth_token_secret: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "HMAC key (HS256) that signs access tokens, at least 32 characters. Unset or empty: a"
            " random key per process, so every sign-in ends when the backend restarts."
        ),
    )
    auth_token_previous_secret: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "The signing key before the last rotation of AUTH_TOKEN_SECRET, accepted for verification"
            " only: tokens it signed stay valid until they expire (AUTH_TOKEN_TTL_S at most), so a"
            " rotation signs nobody out. Empty: none. Remove it AUTH_TOKEN_TTL_S after the rotation."
        ),
    )
    auth_token_ttl_s: int = Field(
        default=1800, ge=10, le=86_400, description="How long an access token from Login is valid."
    )
    auth_user_cache_s: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="How long each process keeps a user's state (role, disabled, token version) before"
        " reading it again: a change made through another replica or the CLI (a disable, a new role,"
        " a new password) applies here within this time; one made through this process, at once."
        " 0 reads it on every call.",
    )
    allow_anonymous_reads: bool = Field(
        default=False,
        description="Let callers without a token list fruits, read the model and predict (READ rows).",
    )
    first_admin_username: str = Field(
        default="admin", description="The admin created at start-up when no user of that name exists."
    )
    first_admin_password: SecretStr = Field(
        default=SecretStr(""),
        description="Its password (at least 12 characters); empty: no user is created at start-up.",
    )
    retrainer_username: str = Field(
        default="retrainer",
        description="The retraining runner's service account (role retrainer: it may only ask for the"
        " champion to be served), created or updated at start-up when RETRAINER_PASSWORD is set.",
    )
    retrainer_password: SecretStr = Field(
        default=SecretStr(""),
        description="Its password (at least 12 characters; compose generates one in the runner's own"
        " secret volume); empty: no service account, and the runner cannot switch the served model.",
    )
    login_free_attempts: int = Field(
        default=5,
        ge=1,
        description="Sign-in attempts one (username, client address) pair may make at once in a"
        " LOGIN_WINDOW_S window; each further one waits (LOGIN_DELAY_S, doubling). Never a lock-out:"
        " other addresses are not affected.",
    )
    login_delay_s: float = Field(
        default=2.0,
        gt=0,
        description="The wait before a pair's first attempt beyond LOGIN_FREE_ATTEMPTS; it doubles"
        " with each further attempt, up to LOGIN_DELAY_MAX_S.",
    )
    login_delay_max_s: float = Field(
        default=120.0, gt=0, description="The longest a (username, address) pair is made to wait."
    )
    login_window_s: float = Field(
        default=900.0,
        gt=0,
        description="Sign-in attempts are counted in fixed windows of this many seconds; a new window"
        " starts every count over, and the records of a window expire with it (a TTL index).",
    )
    login_address_max_attempts: int = Field(
        default=100,
        ge=1,
        description="Failed sign-ins allowed from one client address per window, across usernames;"
        " beyond, that address gets RESOURCE_EXHAUSTED until the window ends.",
    )
    login_ipv6_prefix: int = Field(
        default=64,
        ge=16,
        le=128,
        description="IPv6 clients are counted per network of this prefix length (one subscriber"
        " usually holds a whole /64).",
    )
    login_trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description='Proxies (JSON list of networks, e.g. ["10.0.0.0/8"]) whose X-Forwarded-For'
        " header names the client; from any other peer the header is ignored.",
    )
    login_hash_concurrency: int = Field(
        default=2,
        ge=1,
        description="Password hashes (argon2id: 64 MiB and about 0.2 s of CPU each) that run at once.",
    )
    login_hash_queue: int = Field(
        default=32,
        ge=0,
        description="Sign-ins that may wait for a hash; beyond, a sign-in gets RESOURCE_EXHAUSTED at once.",
    )
    tls_cert_file: FilePath | None = Field(
        default=None, description="PEM certificate (chain) of the server; with TLS_KEY_FILE, serve TLS."
    )
    tls_key_file: FilePath | None = Field(default=None, description="PEM private key of TLS_CERT_FILE.")
    tls_ca_file: FilePath | None = Field(
        default=None,
        description="CA that signed the certificate: the container probe's trust root when TLS is on.",
    )
    local_mode: bool = Field(
        default=False,
        description="Allow the placeholder secrets (local development only; GRPC_HOST must be loopback).",
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, how long in-flight calls may take to finish."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Logging level."
    )

    # ---- limits: what one caller can make the server hold or do (docs/trust-model.md) ----
    max_request_bytes: int = Field(
        default=8 * 1024,
        ge=1024,
        description="Largest request message, in bytes, of every method not named below (Login, AddFruit, "
        "...); the biggest valid one is a CreateUser with a 64-character name and a 1024-character "
        "password of 4-byte characters, 4,165 bytes. Larger: RESOURCE_EXHAUSTED before any handler runs.",
    )
    max_predict_request_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest Predict request in bytes: one row of named features (1,000 features of "
        "38-character names are 51,000 bytes).",
    )
    max_batch_request_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest PredictBatch request message (one chunk of rows) in bytes: 100k rows of "
        "a 13-feature model are ~10 MB. Also the server-wide gRPC receive limit.",
    )
    max_concurrent_calls: int = Field(
        default=256,
        ge=1,
        description="Calls the server handles at once (health checks not counted); beyond, a call is "
        "refused at once with RESOURCE_EXHAUSTED.",
    )
    predict_batch_max_rows: int = Field(
        default=10_000_000,
        ge=1,
        description="Rows one PredictBatch call may carry; beyond, INVALID_ARGUMENT.",
    )
    predict_batch_max_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest a PredictBatch call may run, in seconds, whatever the client's deadline; "
        "then DEADLINE_EXCEEDED.",
    )
    drift_max_window_predictions: int = Field(
        default=1_000_000,
        ge=1,
        description="Largest last_predictions a GetDriftReport may ask for; beyond, INVALID_ARGUMENT.",
    )
    drift_max_window_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Longest time_range a GetDriftReport may ask for, in seconds; beyond, INVALID_ARGUMENT.",
    )

    @model_validator(mode="after")
    def _loopback_in_local_mode(self) -> Self:
        # Local mode accepts the placeholder secrets and the documented admin password, which
        # anybody can read in this repository: such a backend must not be reachable from the network.
        if self.local_mode and not is_loopback(self.grpc_host):
            raise ValueError(
                f"LOCAL_MODE=true accepts the placeholder secrets, so the backend listens on loopback only;"
                f" GRPC_HOST is {self.grpc_host!r}: set GRPC_HOST=127.0.0.1 (or ::1, localhost), or"
                " LOCAL_MODE=false with real secrets to listen on the network"
            )
        return self

    @field_validator("page_token_secret", "auth_token_secret", mode="before")
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
        token_secret = self.auth_token_secret.get_secret_value()
        if not self.local_mode and token_secret == PLACEHOLDER_AUTH_TOKEN_SECRET:
            raise ValueError("AUTH_TOKEN_SECRET is the placeholder; set a real secret or LOCAL_MODE=true")
        if len(token_secret) < AUTH_TOKEN_SECRET_MIN:
            raise ValueError(f"AUTH_TOKEN_SECRET must be at least {AUTH_TOKEN_SECRET_MIN} characters")
        previous = self.auth_token_previous_secret.get_secret_value()
        if previous and not self.local_mode and previous == PLACEHOLDER_AUTH_TOKEN_SECRET:
            raise ValueError(
                "AUTH_TOKEN_PREVIOUS_SECRET is the placeholder; anyone could sign tokens with it"
            )
        if previous and len(previous) < AUTH_TOKEN_SECRET_MIN:
            raise ValueError(
                f"AUTH_TOKEN_PREVIOUS_SECRET must be at least {AUTH_TOKEN_SECRET_MIN} characters"
            )
        password = self.first_admin_password.get_secret_value()
        if password:
            if not self.local_mode and password == PLACEHOLDER_ADMIN_PASSWORD:
                raise ValueError(
                    "FIRST_ADMIN_PASSWORD is the documented local default; set a real one or LOCAL_MODE=true"
                )
            if len(password) < FIRST_ADMIN_PASSWORD_MIN:
                raise ValueError(
                    f"FIRST_ADMIN_PASSWORD must be at least {FIRST_ADMIN_PASSWORD_MIN} characters"
                )
        retrainer = self.retrainer_password.get_secret_value()
        if retrainer:
            if not self.local_mode and retrainer == PLACEHOLDER_RETRAINER_PASSWORD:
                raise ValueError(
                    "RETRAINER_PASSWORD is the documented local default; set a real one or LOCAL_MODE=true"
                )
            if len(retrainer) < FIRST_ADMIN_PASSWORD_MIN:
                raise ValueError(f"RETRAINER_PASSWORD must be at least {FIRST_ADMIN_PASSWORD_MIN} characters")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both TLS_CERT_FILE and TLS_KEY_FILE (or neither, for plaintext)")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None
