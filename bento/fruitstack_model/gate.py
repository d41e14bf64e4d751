"""The promotion gate: a new version becomes `champion` only if it does not score worse than the
current champion on the same evaluation data, by a chosen metric and margin; otherwise it is the
`challenger`. The decision, both scores and the reason are recorded as tags on the version.

A person's decision holds: while the champion is pinned (a rollback pins it, registry.Pin), a
candidate the gate would promote becomes the `challenger` instead, "held" with the pin named, and
waits for an admin to unpin. Only a forced promotion (train.py --promote) passes a pin.

`decide` is the rule alone (pure, unit-tested); `run_gate` loads the champion from the registry
(hash-checked like the service does), scores it on the candidate's evaluation data, decides, and
`record` moves the alias and writes the tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from fruitstack_model.exceptions import InvalidInput
from fruitstack_model.model_store import LoadedModel, load_fetched
from fruitstack_model.registry import CHALLENGER, CHAMPION, GATE_TAG_PREFIX, Pin, Registry

# Metrics the gate can compare; both are "higher is better", which `decide` relies on.
GATE_METRICS = ("f1_macro", "accuracy")
MANUAL = "manual"


@dataclass(frozen=True)
class GateDecision:
    decision: str  # champion | challenger | manual
    metric: str
    margin: float
    candidate_score: float
    champion_score: float | None  # None: there was no champion, or it could not be compared
    champion_version: str | None
    reason: str
    pinned_version: str | None = None  # the pin that held back a candidate the gate would promote

    @property
    def promoted(self) -> bool:
        return self.decision != CHALLENGER

    def tags(self) -> dict[str, str]:
        values = {
            "decision": self.decision,
            "metric": self.metric,
            "margin": repr(self.margin),
            "candidate_score": repr(self.candidate_score),
            "champion_score": "" if self.champion_score is None else repr(self.champion_score),
            "champion_version": self.champion_version or "",
            "reason": self.reason,
            "pinned_version": self.pinned_version or "",
            "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return {f"{GATE_TAG_PREFIX}{key}": value for key, value in values.items()}


def check_gate_settings(metric: str, margin: float) -> None:
    if metric not in GATE_METRICS:
        raise InvalidInput(f"unknown gate metric {metric!r}; choose one of {', '.join(GATE_METRICS)}")
    if not np.isfinite(margin) or margin < 0:
        raise InvalidInput(f"the gate margin must be a finite number >= 0, got {margin}")


def decide(
    *,
    metric: str,
    margin: float,
    candidate_score: float,
    champion_score: float | None,
    champion_version: str | None,
    forced: bool = False,
    incomparable: str | None = None,
    pin: Pin | None = None,
) -> GateDecision:
    """Champion iff candidate >= champion - margin; the first version always; forced is `manual`.

    `incomparable` says why the champion could not be scored on the candidate's data (another
    dataset's features, say): then only a forced promotion replaces it. `pin` holds back what
    would be promoted (a challenger that says so), unless forced.
    """
    check_gate_settings(metric, margin)
    scores = f"{metric} {candidate_score:.4f}"

    def made(decision: str, reason: str) -> GateDecision:
        return GateDecision(
            decision, metric, margin, candidate_score, champion_score, champion_version, reason
        )

    if champion_version is None:
        return made(MANUAL if forced else CHAMPION, f"first version: no champion to compare with ({scores})")
    if champion_score is None:
        why = incomparable or "the champion could not be scored"
        if forced:
            return made(MANUAL, f"forced with --promote; {why}")
        return made(CHALLENGER, f"not promoted: {why}; use --promote to replace the champion anyway")
    against = f"champion v{champion_version} {champion_score:.4f}, margin {margin:g}"
    passes = candidate_score >= champion_score - margin
    if forced:
        verdict = "would pass" if passes else "would fail"
        return made(MANUAL, f"forced with --promote; the gate {verdict}: {scores} vs {against}")
    if passes and pin is not None:
        return replace(
            made(
                CHALLENGER,
                f"held: passes the gate ({scores} >= {against}), but the champion is pinned to"
                f" v{pin.version} ({pin.reason}); an admin unpins to let the gate promote",
            ),
            pinned_version=pin.version,
        )
    if passes:
        return made(CHAMPION, f"promoted: {scores} >= {against}")
    return made(CHALLENGER, f"not promoted: {scores} < {against} (minus the margin)")


def run_gate(
    registry: Registry,
    *,
    candidate_version: str,
    candidate_metrics: Mapping[str, float],
    evaluate: Callable[[LoadedModel], Mapping[str, float]],
    metric: str,
    margin: float,
    forced: bool = False,
) -> GateDecision:
    """Score the current champion with `evaluate` (the candidate's evaluation data) and decide."""
    check_gate_settings(metric, margin)
    champion = registry.champion()
    pin = registry.pin()
    if champion is None or champion.version == candidate_version:
        return decide(
            metric=metric,
            margin=margin,
            candidate_score=candidate_metrics[metric],
            champion_score=None,
            champion_version=None,
            forced=forced,
        )
    model = load_fetched(registry.fetch(champion.version))
    incomparable = None
    champion_score = None
    try:
        champion_score = float(evaluate(model)[metric])
    except IncomparableModel as exc:
        incomparable = str(exc)
    return decide(
        metric=metric,
        margin=margin,
        candidate_score=candidate_metrics[metric],
        champion_score=champion_score,
        champion_version=champion.version,
        forced=forced,
        incomparable=incomparable,
        pin=pin,
    )


class IncomparableModel(Exception):
    """The champion cannot be scored on the candidate's evaluation data (other features/classes)."""


def record(registry: Registry, version: str, decision: GateDecision) -> GateDecision:
    """Tag the version with the decision, then point `champion` (or `challenger`) at it.

    The pin is read again just before the champion alias moves: a rollback made while this
    candidate was being scored wins over it. Returns the decision as recorded.
    """
    if decision.decision == CHAMPION and (pin := registry.pin()) is not None:
        decision = replace(
            decision,
            decision=CHALLENGER,
            reason=f"held: the champion was pinned to v{pin.version} ({pin.reason}) while this"
            " version was being scored; an admin unpins to let the gate promote",
            pinned_version=pin.version,
        )
    registry.set_tags(version, decision.tags())
    registry.set_alias(CHAMPION if decision.promoted else CHALLENGER, version)
    return decision


def record_manual(registry: Registry, version: str, *, previous: str | None, how: str, by: str = "") -> None:
    """A person made `version` champion (a rollback): pin it, tag it so, then move the alias.

    The pin comes first, so that no gate decision between the two writes can move the alias back.
    """
    when = datetime.now(UTC).isoformat(timespec="seconds")
    who = by or "an admin"
    registry.set_pin(
        Pin(
            version=version,
            by=who,
            at=when,
            reason=f"{who} chose v{version} (champion was {'v' + previous if previous else 'none'})",
        )
    )
    if previous == version:
        return  # already the champion: pinned, and its gate decision stays as it was
    registry.set_tags(
        version,
        {
            f"{GATE_TAG_PREFIX}decision": MANUAL,
            f"{GATE_TAG_PREFIX}reason": f"made champion by {who} ({how}) at {when} (champion was "
            f"{'v' + previous if previous else 'none'})",
            f"{GATE_TAG_PREFIX}decided_at": when,
        },
    )
    registry.set_alias(CHAMPION, version)
