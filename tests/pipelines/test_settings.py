"""The runner's settings: shared variable names, the deployment's name, the retry backoff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from backend.auth.secret_files import SERVICE_SECRETS, ensure_secret_files
from pipelines.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_shared_settings_are_read_under_the_other_services_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://mongo:27017")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("BACKEND_ADDRESS", "backend:50051")
    monkeypatch.setenv("RETRAINING_INTERVAL_S", "60")
    monkeypatch.setenv("RETRAINING_PARAMS", '{"C": 0.5}')

    read = settings()

    assert (read.mongodb_uri, read.tracking_uri, read.backend_address) == (
        "mongodb://mongo:27017",
        "http://mlflow:5000",
        "backend:50051",
    )
    assert read.interval_s == 60
    assert read.params == {"C": 0.5}
    assert read.deployment_name == "fruitstack-classifier"


@pytest.mark.parametrize("deployment", ["fruitstack", "other/fruitstack", "retrain/", "retrain/a/b"])
def test_the_deployment_must_be_of_the_retrain_flow(deployment: str) -> None:
    with pytest.raises(ValidationError, match="RETRAINING_DEPLOYMENT must be retrain/NAME"):
        settings(deployment=deployment)


def test_an_unknown_gate_metric_is_refused() -> None:
    with pytest.raises(ValidationError, match="RETRAINING_GATE_METRIC"):
        settings(gate_metric="loss")


def test_retries_back_off_exponentially() -> None:
    assert settings(retries=3, retry_delay_s=2).retry_delays() == [2, 4, 8]
    assert settings(retries=0).retry_delays() == []


def test_the_runner_signs_in_as_the_service_account_in_its_own_secret_volume(tmp_path: Path) -> None:
    """What compose mounts at the runner's /run/secrets: the retrainer's password, read as is."""
    ensure_secret_files(tmp_path, SERVICE_SECRETS)

    read = Settings(_env_file=None, _secrets_dir=tmp_path)  # type: ignore[call-arg]

    password = (tmp_path / "retrainer_password").read_text()
    assert (read.backend_username, read.backend_password.get_secret_value()) == ("retrainer", password)
