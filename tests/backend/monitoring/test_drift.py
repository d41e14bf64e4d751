"""Drift summaries and tests in isolation: false alarms stay within alpha, real shifts are found."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from backend.monitoring.drift import Summary, compare

FEATURES = ("a", "b", "c")


def summary(rng: np.random.Generator, n: int, *, shift: dict[str, float] | None = None) -> Summary:
    shift = shift or {}
    s = Summary()
    columns = {name: rng.normal(shift.get(name, 0.0), 1.0, n) for name in FEATURES}
    labels = rng.choice(["x", "y", "z"], size=n, p=[0.5, 0.3, 0.2]).tolist()
    s.update(columns, labels)
    return s


def test_same_distribution_raises_at_most_alpha_false_alarms() -> None:
    rng = np.random.default_rng(0)
    reference = summary(rng, 150)  # like a training set of iris size: kept exactly by the sketch
    alpha = 0.05
    reports = [compare(reference, summary(rng, 1000), features=FEATURES, alpha=alpha) for _ in range(200)]
    alarms = sum(r.drift for r in reports)
    # Expected at most 10 of 200 (alpha); allow sampling noise above that, far below a broken test.
    assert alarms <= 20, alarms


def test_a_shift_of_one_feature_is_found_on_that_feature_only() -> None:
    rng = np.random.default_rng(1)
    reference = summary(rng, 150)
    report = compare(reference, summary(rng, 1000, shift={"b": 1.0}), features=FEATURES, alpha=0.01)
    by_name = {f.feature: f for f in report.features}
    assert by_name["b"].drift
    assert by_name["b"].statistic > by_name["b"].threshold
    assert not by_name["a"].drift
    assert not by_name["c"].drift
    assert report.drifted == ["b"]
    assert report.score > 1


def test_the_statistic_equals_scipys_two_sample_ks_while_the_sketches_are_exact() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, 150), rng.normal(0.3, 1, 180)
    reference, window = Summary(), Summary()
    reference.update({"a": x}, [])
    window.update({"a": y}, [])
    result = compare(reference, window, features=("a",), alpha=0.01)
    assert result.features[0].statistic == pytest.approx(stats.ks_2samp(x, y).statistic, abs=1e-12)


def test_a_large_window_is_summarised_in_constant_size_and_merges() -> None:
    rng = np.random.default_rng(3)
    parts = [summary(rng, 100_000) for _ in range(3)]
    merged = Summary()
    for part in parts:
        merged.merge(Summary.from_doc(part.to_doc()))
    assert merged.rows == 300_000
    assert max(len(s.serialize()) for s in merged.sketches.values()) < 10_000
    assert sum(merged.labels.values()) == 300_000


def test_labels_shifted_away_from_training_shares_are_drift() -> None:
    rng = np.random.default_rng(4)
    reference = summary(rng, 150)
    window = Summary()
    columns = {name: rng.normal(0, 1, 1000) for name in FEATURES}
    window.update(columns, Counter({"x": 100, "y": 300, "z": 600}))
    result = compare(reference, window, features=FEATURES, alpha=0.01)
    assert result.labels is not None
    assert result.labels.drift
    assert "labels" in result.drifted


def test_a_label_never_seen_in_training_is_drift() -> None:
    reference, window = Summary(), Summary()
    reference.update({"a": np.zeros(100)}, ["x"] * 60 + ["y"] * 40)
    window.update({"a": np.zeros(100)}, ["x"] * 50 + ["y"] * 40 + ["new"] * 10)
    result = compare(reference, window, features=("a",), alpha=0.01)
    assert result.labels is not None
    assert result.labels.drift


def test_histograms_share_edges_and_sum_to_one() -> None:
    rng = np.random.default_rng(5)
    result = compare(summary(rng, 150), summary(rng, 500, shift={"a": 2}), features=FEATURES, alpha=0.01)
    feature = result.features[0]
    assert feature.reference.edges == feature.window.edges
    assert len(feature.window.fractions) == len(feature.window.edges) - 1
    assert sum(feature.window.fractions) == pytest.approx(1.0)
    assert sum(feature.reference.fractions) == pytest.approx(1.0)
