"""The promotion gate: a new version becomes `champion` only if it does not score worse than the
current champion on the same evaluation data, by a chosen metric and margin; otherwise it is the
`challenger`. The decision, both scores and the reason are recorded as tags on the version.

`decide` is the rule alone (pure, unit-tested); `run_gate` loads the champion from the registry
(hash-checked like the service does), scores it on the candidate's evaluation data, decides, and
`record` moves the alias and writes the tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from fruitstack_model.exceptions import InvalidInput
from fruitstack_model.model_store import LoadedModel, load_fetched
from fruitstack_model.registry import CHALLENGER, CHAMPION, GATE_TAG_PREFIX, Registry

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
) -> GateDecision:
    """Champion iff candidate >= champion - margin; the first version always; forced is `manual`.

    `incomparable` says why the champion could not be scored on the candidate's data (another
    dataset's features, say): then only a forced promotion replaces it.
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
    )


class IncomparableModel(Exception):
    """The champion cannot be scored on the candidate's evaluation data (other features/classes)."""


def record(registry: Registry, version: str, decision: GateDecision) -> None:
    """Tag the version with the decision, then point `champion` (or `challenger`) at it."""
    registry.set_tags(version, decision.tags())
    registry.set_alias(CHAMPION if decision.promoted else CHALLENGER, version)


def record_manual(registry: Registry, version: str, *, previous: str | None, how: str) -> None:
    """A person made `version` champion (a rollback): tag it so, then move the alias."""
    when = datetime.now(UTC).isoformat(timespec="seconds")
    registry.set_tags(
        version,
        {
            f"{GATE_TAG_PREFIX}decision": MANUAL,
            f"{GATE_TAG_PREFIX}reason": f"made champion by {how} at {when} (champion was "
            f"{'v' + previous if previous else 'none'})",
            f"{GATE_TAG_PREFIX}decided_at": when,
        },
    )
    registry.set_alias(CHAMPION, version)
