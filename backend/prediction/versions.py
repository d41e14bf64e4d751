"""The model registry as the model service reports it: registered versions and the gate's decisions.

The backend never talks to MLflow itself: the model service, which has the registry client, answers
`/versions` and `/reload {"version": ...}`, and the backend keeps only these plain types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backend.exceptions import InvalidArgument
from backend.messages import shorten

# Registry version numbers are small positive integers; a bound keeps the check cheap and plain.
_MAX_VERSION_DIGITS = 9


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """What the model service last learned from the registry (it polls the champion alias)."""

    reachable: bool | None  # None: not asked yet
    error: str
    checked_at: datetime | None
    champion: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegistryStatus:
        return cls(
            reachable=data.get("reachable"),
            error=str(data.get("error") or ""),
            checked_at=_time(data.get("checked_at")),
            champion=str(data.get("champion") or ""),
        )


@dataclass(frozen=True, slots=True)
class GateDecision:
    decision: str  # "champion", "challenger", "manual" or "" (never gated)
    metric: str
    margin: float | None
    candidate_score: float | None
    champion_score: float | None
    champion_version: str
    reason: str
    decided_at: datetime | None
    pinned_version: str = ""  # the pin that held this version back

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateDecision:
        return cls(
            decision=str(data.get("decision") or ""),
            metric=str(data.get("metric") or ""),
            margin=_float(data.get("margin")),
            candidate_score=_float(data.get("candidate_score")),
            champion_score=_float(data.get("champion_score")),
            champion_version=str(data.get("champion_version") or ""),
            reason=str(data.get("reason") or ""),
            decided_at=_time(data.get("decided_at")),
            pinned_version=str(data.get("pinned_version") or ""),
        )


@dataclass(frozen=True, slots=True)
class ModelVersion:
    version: str
    run_id: str
    created_at: datetime | None
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    sha256: str
    gate: GateDecision

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelVersion:
        return cls(
            version=str(data["version"]),
            run_id=str(data.get("run_id") or ""),
            created_at=_time(data.get("created_at")),
            aliases=tuple(str(a) for a in data.get("aliases") or ()),
            metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
            sha256=str(data.get("sha256") or ""),
            gate=GateDecision.from_json(data.get("gate") or {}),
        )


@dataclass(frozen=True, slots=True)
class Pin:
    """The champion pinned by a person's rollback."""

    version: str
    by: str
    at: datetime | None
    reason: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Pin | None:
        if not data or not data.get("version"):
            return None
        return cls(
            version=str(data["version"]),
            by=str(data.get("by") or ""),
            at=_time(data.get("at")),
            reason=str(data.get("reason") or ""),
        )


@dataclass(frozen=True, slots=True)
class ModelVersions:
    """Every registered version, newest first (the model service's `/versions` answer)."""

    name: str
    served_version: str
    champion: str
    versions: tuple[ModelVersion, ...]
    pin: Pin | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelVersions:
        return cls(
            name=str(data["name"]),
            served_version=str(data.get("served_version") or ""),
            champion=str(data.get("champion") or ""),
            versions=tuple(ModelVersion.from_json(v) for v in data.get("versions") or ()),
            pin=Pin.from_json(data.get("pin")),
        )


def parse_version(raw: str) -> str:
    """ "" (the champion) or a registry version number such as "3"; InvalidArgument otherwise."""
    version = raw.strip()
    if version and not (version.isascii() and version.isdigit() and len(version) <= _MAX_VERSION_DIGITS):
        raise InvalidArgument(
            f"version {shorten(raw)!r} is not a registry version number such as '3' (empty: the champion)"
        )
    return version.lstrip("0") or ("0" if version else "")
