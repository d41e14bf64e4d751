"""The Model tab's words for a pinned champion and what waits behind it."""

from __future__ import annotations

from datetime import UTC, datetime

from frontend.client import GateDecision, ModelPin, ModelVersion, ModelVersions
from frontend.modules.model import pin_text


def version(number: str, *, pinned_by: str = "") -> ModelVersion:
    gate = GateDecision(
        decision="challenger" if pinned_by else "champion",
        metric="f1_macro",
        candidate_score=0.9,
        champion_score=0.9,
        champion_version="1",
        reason="held: ..." if pinned_by else "promoted: ...",
        pinned_version=pinned_by,
    )
    return ModelVersion(version=number, run_id="r", created_at=None, aliases=(), metrics={}, gate=gate)


def registered(*versions: ModelVersion, pin: ModelPin | None) -> ModelVersions:
    return ModelVersions(name="m", served_version="1", champion="1", versions=versions, pin=pin)


PIN = ModelPin(
    version="1", pinned_by="alice", pinned_at=datetime(2026, 12, 5, 8, 0, tzinfo=UTC), reason="alice chose v1"
)


def test_nothing_is_said_without_a_pin() -> None:
    assert pin_text(registered(version("2"), version("1"), pin=None)) is None


def test_a_pin_names_who_when_and_what_waits() -> None:
    text = pin_text(registered(version("3", pinned_by="1"), version("2"), version("1"), pin=PIN))
    assert text == (
        "Version 1 is pinned by alice on 2026-12-05 08:00 UTC: retraining runs still train, gate and"
        " register versions, but promote none until an admin unpins. Held back, though the gate would"
        " promote it: version 3."
    )
    two = pin_text(registered(version("4", pinned_by="1"), version("3", pinned_by="1"), pin=PIN))
    assert two is not None
    assert two.endswith("Held back, though the gate would promote them: versions 4, 3.")
