"""The promotion gate's rule, alone: pure function, no registry."""

from __future__ import annotations

import math

import pytest
from fruitstack_model.exceptions import InvalidInput
from fruitstack_model.gate import decide
from fruitstack_model.registry import Pin


def gate(candidate: float, champion: float | None, *, margin: float = 0.0, forced: bool = False) -> str:
    decision = decide(
        metric="f1_macro",
        margin=margin,
        candidate_score=candidate,
        champion_score=champion,
        champion_version=None if champion is None else "3",
        forced=forced,
    )
    return decision.decision


def test_the_first_version_is_champion() -> None:
    assert gate(0.1, None) == "champion"


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "expected"),
    [
        (0.95, 0.90, 0.0, "champion"),
        (0.90, 0.90, 0.0, "champion"),  # at least as good
        (0.89, 0.90, 0.0, "challenger"),
        (0.89, 0.90, 0.02, "champion"),  # within the margin
        (0.87, 0.90, 0.02, "challenger"),
    ],
)
def test_champion_only_when_not_worse_than_the_champion_minus_the_margin(
    candidate: float, champion: float, margin: float, expected: str
) -> None:
    assert gate(candidate, champion, margin=margin) == expected


def test_a_forced_promotion_is_manual_and_says_what_the_gate_would_have_done() -> None:
    decision = decide(
        metric="f1_macro",
        margin=0.0,
        candidate_score=0.39,
        champion_score=0.92,
        champion_version="1",
        forced=True,
    )
    assert decision.decision == "manual"
    assert decision.promoted
    assert "would fail" in decision.reason


def test_the_reason_and_both_scores_are_recorded_as_tags() -> None:
    decision = decide(
        metric="accuracy", margin=0.01, candidate_score=0.5, champion_score=0.9, champion_version="7"
    )
    assert not decision.promoted
    tags = decision.tags()
    assert tags["gate.decision"] == "challenger"
    assert tags["gate.metric"] == "accuracy"
    assert float(tags["gate.candidate_score"]) == 0.5
    assert float(tags["gate.champion_score"]) == 0.9
    assert tags["gate.champion_version"] == "7"
    assert "accuracy 0.5000 < champion v7 0.9000" in tags["gate.reason"]


def test_an_incomparable_champion_is_replaced_only_by_force() -> None:
    def against_other_features(forced: bool) -> tuple[str, str]:
        decision = decide(
            metric="f1_macro",
            margin=0.0,
            candidate_score=1.0,
            champion_score=None,
            champion_version="2",
            forced=forced,
            incomparable="other features",
        )
        return decision.decision, decision.reason

    decision, reason = against_other_features(forced=False)
    assert decision == "challenger"
    assert "other features" in reason
    assert "--promote" in reason
    assert against_other_features(forced=True)[0] == "manual"


@pytest.mark.parametrize(("metric", "margin"), [("auc", 0.0), ("f1_macro", -0.1), ("f1_macro", math.nan)])
def test_bad_gate_settings_are_refused(metric: str, margin: float) -> None:
    with pytest.raises(InvalidInput):
        decide(metric=metric, margin=margin, candidate_score=1.0, champion_score=None, champion_version=None)


PIN = Pin(version="2", by="alice", at="2026-12-05T08:00:00+00:00", reason="alice chose v2 (champion was v3)")


def test_a_pin_holds_back_what_the_gate_would_promote_and_says_so() -> None:
    held = decide(
        metric="f1_macro",
        margin=0.0,
        candidate_score=0.95,
        champion_score=0.90,
        champion_version="2",
        pin=PIN,
    )
    assert (held.decision, held.pinned_version) == ("challenger", "2")
    assert not held.promoted
    assert held.reason == (
        "held: passes the gate (f1_macro 0.9500 >= champion v2 0.9000, margin 0), but the champion is"
        " pinned to v2 (alice chose v2 (champion was v3)); an admin unpins to let the gate promote"
    )
    assert held.tags()["gate.pinned_version"] == "2"
    # A worse candidate is simply not promoted; a forced one passes the pin (a person's decision too).
    worse = decide(
        metric="f1_macro", margin=0.0, candidate_score=0.5, champion_score=0.9, champion_version="2", pin=PIN
    )
    assert (worse.decision, worse.pinned_version) == ("challenger", None)
    forced = decide(
        metric="f1_macro",
        margin=0.0,
        candidate_score=0.5,
        champion_score=0.9,
        champion_version="2",
        pin=PIN,
        forced=True,
    )
    assert forced.decision == "manual"
