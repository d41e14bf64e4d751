"""Drift: constant-size summaries of served inputs, and the tests that compare them with training data.

A `Summary` holds one KLL quantile sketch per feature (Apache DataSketches) and the count of each
predicted label. Sketches are mergeable and a few KB each whatever the number of rows, so a window
of a million predictions (or a million-row PredictBatch) is summarised, stored and compared at the
cost of a few hundred sketches, never row by row. A sketch of up to `SKETCH_K` rows keeps every row
(exact); beyond that its rank error is bounded (about 1.3% at k=200), and the test's threshold
widens by that bound so that the sketching never raises a false alarm by itself.

Per feature: the two-sample Kolmogorov-Smirnov test (the statistic is the largest gap between the two
CDFs; the critical value is SciPy's Kolmogorov distribution). Labels: Pearson's chi-square test of
the window's predicted labels against the training labels' shares. The report's false-alarm rate
`alpha` is split evenly over its tests (Bonferroni), so a report on in-distribution inputs says
"drift" with probability at most alpha.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from datasketches import kll_doubles_sketch
from scipy import special, stats

SKETCH_K = 200
HISTOGRAM_BINS = 20
# A label must be expected this many times in the window for the chi-square approximation to hold.
MIN_EXPECTED_PER_LABEL = 5


def _sketch() -> kll_doubles_sketch:
    return kll_doubles_sketch(SKETCH_K)


def _rank_error(sketch: kll_doubles_sketch) -> float:
    return float(sketch.normalized_rank_error(False)) if sketch.is_estimation_mode() else 0.0


@dataclass
class Summary:
    """Sketches of each feature and counts of each predicted label over some rows."""

    sketches: dict[str, kll_doubles_sketch] = field(default_factory=dict)
    labels: Counter[str] = field(default_factory=Counter)
    rows: int = 0

    def update(
        self, columns: Mapping[str, npt.NDArray[np.float64]], labels: Iterable[str] | Mapping[str, int]
    ) -> None:
        """Add rows given column by column (every column of the same length) and their labels."""
        n = 0
        for name, values in columns.items():
            self.sketches.setdefault(name, _sketch()).update(np.ascontiguousarray(values, dtype=np.float64))
            n = len(values)
        self.labels.update(labels)
        self.rows += n

    def merge(self, other: Summary) -> None:
        for name, sketch in other.sketches.items():
            self.sketches.setdefault(name, _sketch()).merge(sketch)
        self.labels.update(other.labels)
        self.rows += other.rows

    def to_doc(self) -> dict[str, object]:
        """A BSON/JSON-friendly form: sketches as bytes (base64 text with `text=True` below)."""
        return {
            "rows": self.rows,
            "sketches": {name: bytes(s.serialize()) for name, s in self.sketches.items()},
            "labels": dict(self.labels),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, object]) -> Summary:
        sketches_doc = doc.get("sketches") or {}
        assert isinstance(sketches_doc, Mapping)
        labels_doc = doc.get("labels") or {}
        assert isinstance(labels_doc, Mapping)
        rows = doc.get("rows", 0)
        assert isinstance(rows, int)
        return cls(
            sketches={
                str(name): kll_doubles_sketch.deserialize(
                    base64.b64decode(raw) if isinstance(raw, str) else bytes(raw)
                )
                for name, raw in sketches_doc.items()
            },
            labels=Counter({str(k): int(v) for k, v in labels_doc.items()}),
            rows=rows,
        )


@dataclass(frozen=True)
class Histogram:
    edges: list[float]
    fractions: list[float]


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    statistic: float
    threshold: float
    drift: bool
    window_size: int
    reference_size: int
    reference: Histogram
    window: Histogram
    test: str = "kolmogorov-smirnov"


@dataclass(frozen=True)
class LabelDrift:
    statistic: float
    threshold: float
    drift: bool
    window_counts: dict[str, int]
    reference_shares: dict[str, float]
    test: str = "chi-square"


@dataclass(frozen=True)
class DriftResult:
    features: tuple[FeatureDrift, ...]
    labels: LabelDrift | None  # None when the window is too small for the test
    alpha: float

    @property
    def drift(self) -> bool:
        return any(f.drift for f in self.features) or (self.labels is not None and self.labels.drift)

    @property
    def score(self) -> float:
        """The largest statistic / threshold over the tests: 1 or more is drift."""
        ratios = [f.statistic / f.threshold for f in self.features if f.threshold > 0]
        if self.labels is not None and self.labels.threshold > 0:
            ratios.append(self.labels.statistic / self.labels.threshold)
        return max(ratios, default=0.0)

    @property
    def drifted(self) -> list[str]:
        names = [f.feature for f in self.features if f.drift]
        return [*names, "labels"] if self.labels is not None and self.labels.drift else names


def compare(reference: Summary, window: Summary, *, features: Sequence[str], alpha: float) -> DriftResult:
    """Test every feature (and the labels) of `window` against `reference` at a total alpha."""
    label_test = window.rows > 0 and sum(reference.labels.values()) > 0
    per_test = alpha / (len(features) + (1 if label_test else 0))
    results = []
    for name in features:
        ref, win = reference.sketches.get(name), window.sketches.get(name)
        if ref is None or win is None or ref.is_empty() or win.is_empty():
            continue
        results.append(_ks(name, ref, win, per_test))
    labels = _chi_square(reference.labels, window.labels, per_test) if label_test else None
    return DriftResult(features=tuple(results), labels=labels, alpha=alpha)


def _ks(name: str, ref: kll_doubles_sketch, win: kll_doubles_sketch, alpha: float) -> FeatureDrift:
    n, m = int(ref.n), int(win.n)
    # Both CDFs at every distinct value either sketch can tell apart: the retained items' quantiles.
    ranks = np.linspace(0.0, 1.0, 2 * SKETCH_K + 1)
    points = np.unique(np.concatenate([ref.get_quantiles(ranks), win.get_quantiles(ranks)]))
    gap = np.abs(np.asarray(ref.get_cdf(points))[:-1] - np.asarray(win.get_cdf(points))[:-1])
    statistic = float(gap.max()) if len(gap) else 0.0
    # Kolmogorov's asymptotic critical value for two samples, widened by both sketches' rank error.
    critical = float(special.kolmogi(alpha)) * math.sqrt((n + m) / (n * m))
    threshold = critical + _rank_error(ref) + _rank_error(win)
    return FeatureDrift(
        feature=name,
        statistic=statistic,
        threshold=threshold,
        drift=statistic > threshold,
        window_size=m,
        reference_size=n,
        reference=_histogram(ref, edges := _edges(ref, win)),
        window=_histogram(win, edges),
    )


def _edges(ref: kll_doubles_sketch, win: kll_doubles_sketch) -> list[float]:
    """HISTOGRAM_BINS equal bins over the range both samples cover."""
    low = min(ref.get_min_value(), win.get_min_value())
    high = max(ref.get_max_value(), win.get_max_value())
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        high = low + 1.0
    return [float(x) for x in np.linspace(low, high, HISTOGRAM_BINS + 1)]


def _histogram(sketch: kll_doubles_sketch, edges: list[float]) -> Histogram:
    # get_pmf(inner edges) is the mass below the first inner edge, between each pair, above the last.
    return Histogram(edges, [float(x) for x in sketch.get_pmf(edges[1:-1])])


def _chi_square(reference: Mapping[str, int], window: Mapping[str, int], alpha: float) -> LabelDrift | None:
    """Pearson's chi-square test of homogeneity: do both samples come from one label distribution?

    A test of homogeneity (a 2 x k contingency table) rather than goodness of fit, because the
    training labels are a sample too: taking their shares as exact would flag a large window of the
    very same distribution as drift.
    """
    classes = sorted(set(reference) | set(window))
    table = np.asarray([[reference.get(c, 0) for c in classes], [window.get(c, 0) for c in classes]], float)
    total_ref = table[0].sum()
    shares = {c: float(table[0, i] / total_ref) for i, c in enumerate(classes)}
    counts = {c: int(table[1, i]) for i, c in enumerate(classes)}
    expected = stats.contingency.expected_freq(table)
    if len(classes) < 2 or expected.min() < MIN_EXPECTED_PER_LABEL:
        # Too few rows for the approximation, except that a class never seen in training but
        # predicted many times now is drift however few the rows.
        unseen = [
            c for c in classes if reference.get(c, 0) == 0 and window.get(c, 0) >= MIN_EXPECTED_PER_LABEL
        ]
        if not unseen:
            return None
        return LabelDrift(math.inf, 0.0, True, counts, shares)
    statistic = float(stats.chi2_contingency(table, correction=False).statistic)
    threshold = float(stats.chi2.ppf(1 - alpha, len(classes) - 1))
    return LabelDrift(
        statistic=statistic,
        threshold=threshold,
        drift=statistic > threshold,
        window_counts=counts,
        reference_shares=shares,
    )
