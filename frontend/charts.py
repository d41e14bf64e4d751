"""Matplotlib figures as plain functions of data (no pyplot state, so sessions never share a figure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from frontend.client import FeatureDrift, FruitCount, ModelVersion, TimePoint, TrainingSample

# Bootstrap 5 colours, so the charts match the page.
PRIMARY = "#0d6efd"
PALETTE = ("#0d6efd", "#fd7e14", "#198754", "#d63384", "#6f42c1", "#20c997", "#dc3545", "#ffc107")
MUTED = "#6c757d"


def literal(text: str) -> str:
    """Text from data (a fruit's name, a feature, a class) as matplotlib draws it: verbatim.

    Matplotlib parses text with a pair of unescaped `$` as mathtext, so a fruit named `$\\alpha$`
    would draw as a Greek letter and one named `$\\foo$` would make drawing the chart fail for every
    viewer. `\\$` is a literal dollar sign to matplotlib, and with every `$` escaped no text is
    mathtext. (`parse_math=False` does the same for a Text the code makes; escaping also covers the
    tick labels and legend entries that matplotlib makes from the strings.)
    """
    return text.replace("$", r"\$")


def _tidy(fig: Figure) -> None:
    for ax in fig.axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(colors=MUTED)
    fig.tight_layout()


def counts_figure(counts: Sequence[FruitCount], *, top: int = 12) -> Figure:
    """Horizontal bars of the most common fruits, the most common on top."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    shown = list(counts[:top])
    if not shown:
        ax.text(0.5, 0.5, "No fruits yet", ha="center", va="center", color=MUTED, transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    names = [literal(c.name) for c in reversed(shown)]
    values = [c.count for c in reversed(shown)]
    bars = ax.barh(names, values, color=PRIMARY)
    ax.bar_label(bars, padding=3, color=MUTED)
    ax.set_xlabel("count")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(counts) > top:
        ax.set_title(f"top {top} of {len(counts)} names", color=MUTED, fontsize=9, loc="left")
    _tidy(fig)
    return fig


def sample_figure(
    sample: TrainingSample,
    *,
    x: str,
    y: str,
    classes: Sequence[str],
    query: Mapping[str, float] | None = None,
) -> Figure:
    """The training sample on two features, one colour per class, with the query point on top."""
    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    xs, ys = sample.columns.get(x, []), sample.columns.get(y, [])
    labels = list(sample.labels)
    # Classes missing from `classes` (should not happen) still get a colour.
    names = list(classes) + sorted({lab for lab in labels} - set(classes))
    for i, name in enumerate(names):
        idx = [j for j, lab in enumerate(labels) if lab == name and j < len(xs) and j < len(ys)]
        if idx:
            ax.scatter(
                [xs[j] for j in idx],
                [ys[j] for j in idx],
                s=22,
                alpha=0.6,
                color=PALETTE[i % len(PALETTE)],
                label=literal(name),
                edgecolors="none",
            )
    if query is not None and x in query and y in query:
        ax.scatter(
            [query[x]],
            [query[y]],
            s=260,
            marker="*",
            color="black",
            edgecolors="white",
            zorder=5,
            label="your input",
        )
    ax.set_xlabel(literal(x))
    ax.set_ylabel(literal(y))
    ax.legend(frameon=False, fontsize=8, loc="best")
    _tidy(fig)
    return fig


def versions_figure(versions: Sequence[ModelVersion], *, metric: str) -> Figure:
    """The metric of every registered version in order, the champion marked with a star."""
    fig = Figure(figsize=(6, 3.0))
    ax = fig.add_subplot()
    scored = sorted(
        (v for v in versions if metric in v.metrics and v.version.isdigit()), key=lambda v: int(v.version)
    )
    if not scored:
        ax.text(0.5, 0.5, "No versions yet", ha="center", va="center", color=MUTED, transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    xs = [int(v.version) for v in scored]
    ys = [v.metrics[metric] for v in scored]
    ax.plot(xs, ys, marker="o", color=PRIMARY, linewidth=1.5, label=literal(metric))
    champions = [v for v in scored if v.is_champion]
    if champions:
        ax.scatter(
            [int(v.version) for v in champions],
            [v.metrics[metric] for v in champions],
            s=260,
            marker="*",
            color="#ffc107",
            edgecolors="black",
            zorder=5,
            label="champion",
        )
    ax.set_xlabel("version")
    ax.set_ylabel(literal(f"{metric} (holdout)"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False, fontsize=8, loc="best")
    _tidy(fig)
    return fig


def _empty(fig: Figure, text: str) -> Figure:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", color=MUTED, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def distribution_figure(feature: FeatureDrift) -> Figure:
    """The training data's and the recent window's distribution of one feature, over the same bins."""
    fig = Figure(figsize=(6, 3.2))
    if not feature.edges:
        return _empty(fig, "No data yet")
    ax = fig.add_subplot()
    edges = list(feature.edges)
    ax.stairs(feature.reference_fractions, edges, fill=True, alpha=0.35, color=MUTED, label="training data")
    colour = "#dc3545" if feature.drift else PRIMARY
    ax.stairs(feature.window_fractions, edges, linewidth=2, color=colour, label="recent predictions")
    ax.set_xlabel(literal(feature.feature))
    ax.set_ylabel("share of rows")
    ax.legend(frameon=False, fontsize=8, loc="best")
    _tidy(fig)
    return fig


def series_figure(
    points: Sequence[tuple[datetime, float]],
    *,
    ylabel: str,
    threshold: float | None = None,
    kind: str = "line",
) -> Figure:
    """A time series: (time, value) points; an optional dashed line at threshold."""
    fig = Figure(figsize=(6, 2.6))
    if not points:
        return _empty(fig, "No data yet")
    ax = fig.add_subplot()
    # Minutes before now on the x axis: what a person watching the page reads at a glance.
    now = datetime.now(UTC)
    minutes = [(t - now).total_seconds() / 60 for t, _ in points]
    values = [v for _, v in points]
    if kind == "bar":
        step = minutes[1] - minutes[0] if len(minutes) > 1 else 1.0
        ax.bar(minutes, values, width=0.8 * step, align="edge", color=PRIMARY)
    else:
        ax.plot(minutes, values, marker="o", markersize=3, color=PRIMARY)
    ax.set_xlabel("minutes ago")
    if threshold is not None:
        ax.axhline(threshold, color="#dc3545", linestyle="--", linewidth=1)
    ax.set_ylabel(literal(ylabel))
    _tidy(fig)
    return fig


def counts_series(points: Sequence[TimePoint]) -> list[tuple[datetime, float]]:
    """Predictions per bin (single predictions and bulk rows together)."""
    return [(p.start, float(p.a + p.b)) for p in points]


def accuracy_series(points: Sequence[TimePoint]) -> list[tuple[datetime, float]]:
    """Live accuracy per bin, for bins with feedback."""
    return [(p.start, p.b / p.a) for p in points if p.a]
