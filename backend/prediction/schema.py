"""The model's description as the model service reports it, and input checks against it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from backend.exceptions import InvalidArgument
from backend.messages import name_list
from backend.prediction.versions import RegistryStatus

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FeatureInfo:
    """A numeric input feature and its range in the training data."""

    name: str
    min: float
    max: float
    mean: float


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the model service says about the model it serves (its `/model` answer)."""

    name: str
    version: str
    dataset: str
    features: tuple[FeatureInfo, ...]
    classes: tuple[str, ...]
    metrics: dict[str, float]
    trained_at: datetime | None
    sample_columns: dict[str, list[float]] = field(default_factory=dict)
    sample_labels: list[str] = field(default_factory=list)
    run_id: str = ""  # the MLflow run that trained it
    aliases: tuple[str, ...] = ()  # e.g. ("champion",)
    registry: RegistryStatus | None = None
    # The summary of the training data drift is measured against (backend.monitoring.drift.Summary).
    reference: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    # Derived from `features` once: every prediction's check reads it.
    feature_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_names", tuple(f.name for f in self.features))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelInfo:
        """Parse the model service's `/model` body; a malformed one is a bug there, so KeyError is fine."""
        sample = data.get("training_sample") or {}
        trained_at = data.get("trained_at")
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            dataset=str(data.get("dataset", "")),
            features=tuple(
                FeatureInfo(
                    name=str(f["name"]), min=float(f["min"]), max=float(f["max"]), mean=float(f["mean"])
                )
                for f in data["features"]
            ),
            classes=tuple(str(c) for c in data["classes"]),
            metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
            trained_at=datetime.fromisoformat(trained_at) if trained_at else None,
            sample_columns={str(k): [float(x) for x in v] for k, v in (sample.get("columns") or {}).items()},
            sample_labels=[str(x) for x in sample.get("labels") or []],
            run_id=str(data.get("run_id") or ""),
            aliases=tuple(str(a) for a in data.get("aliases") or ()),
            registry=RegistryStatus.from_json(data["registry"]) if data.get("registry") else None,
            reference=data.get("reference"),
        )

    def row(self, features: Mapping[str, float]) -> list[float]:
        """One row of named features as values in the model's order; InvalidArgument says what is wrong."""
        names = self.feature_names
        if len(features) != len(names) or any(name not in features for name in names):
            self._raise_for_names(features.keys())
        row = [features[name] for name in names]
        for name, value in zip(names, row, strict=True):
            if not math.isfinite(value):
                raise InvalidArgument(f"feature {name!r} must be a finite number, got {value}")
        return row

    def matrix(self, columns: Mapping[str, FloatArray], *, row_offset: int = 0) -> FloatArray:
        """Stack named columns into an (n_rows, n_features) float64 array in the model's order.

        Messages number rows from row_offset, the chunk's first row in the caller's stream.
        """
        names = self.feature_names
        if len(columns) != len(names) or any(name not in columns for name in names):
            self._raise_for_names(columns.keys())
        lengths = {name: len(columns[name]) for name in names}
        if len(set(lengths.values())) > 1:
            detail = name_list([f"{name}={n}" for name, n in lengths.items()])
            raise InvalidArgument(f"every column must hold the same number of rows, got {detail}")
        x = np.empty((lengths[names[0]], len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            x[:, j] = columns[name]
        finite = np.isfinite(x)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise InvalidArgument(
                f"feature {names[col]!r} must be a finite number, got {x[row, col]} in row {row + row_offset}"
            )
        return x

    def _raise_for_names(self, given: Any) -> None:
        given_names = set(given)
        missing = [name for name in self.feature_names if name not in given_names]
        known = set(self.feature_names)
        unknown = sorted(name for name in given_names if name not in known)
        problems = []
        if missing:
            problems.append(f"missing feature(s) {name_list(missing, quote=True)}")
        if unknown:
            problems.append(f"unknown feature(s) {name_list(unknown, quote=True)}")
        expected = name_list(self.feature_names, limit=20)
        raise InvalidArgument(f"{'; '.join(problems)} (model {self.version} expects: {expected})")
