"""Small pure helpers of the frontend: slider steps, update text, user messages, charts."""

from __future__ import annotations

import pytest

from frontend.charts import counts_figure, sample_figure
from frontend.client import FeatureRange, FruitCount, ModelUpdate, TrainingSample
from frontend.exceptions import BackendUnreachable, InvalidRequest, user_message
from frontend.modules.model import describe_update
from frontend.modules.predict import slider_step, slider_value


@pytest.mark.parametrize(
    ("low", "high", "step"), [(4.3, 7.9, 0.05), (0.1, 2.5, 0.05), (0, 1000, 10), (278, 1680, 20), (1, 1, 1)]
)
def test_slider_step_is_round_and_gives_about_a_hundred_positions(
    low: float, high: float, step: float
) -> None:
    assert slider_step(FeatureRange("f", low, high, (low + high) / 2)) == pytest.approx(step)


def test_slider_value_is_the_mean_on_the_grid_inside_the_range() -> None:
    feature = FeatureRange("f", 4.3, 7.9, 5.843)
    assert slider_value(feature, 0.05) == pytest.approx(5.85)
    assert slider_value(FeatureRange("g", 1.0, 1.2, 1.19), 0.25) == pytest.approx(1.2)


def test_describe_update_shows_previous_and_current() -> None:
    assert describe_update(ModelUpdate("v1", "v2")) == "Updated: v1 → v2"
    assert "no newer model" in describe_update(ModelUpdate("v2", "v2"))


def test_user_message_uses_the_backends_words_as_a_sentence() -> None:
    assert user_message(InvalidRequest("name must not be empty", code="INVALID_ARGUMENT")) == (
        "Name must not be empty."
    )
    assert user_message(BackendUnreachable("the backend at x:1 cannot be reached")).startswith("The backend")


def test_charts_draw_counts_and_the_query_point() -> None:
    fig = counts_figure([FruitCount("apple", 3), FruitCount("pear", 1)])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["pear", "apple"]
    assert "No fruits yet" in [t.get_text() for t in counts_figure([]).axes[0].texts]
    sample = TrainingSample(columns={"x": [1.0, 2.0], "y": [3.0, 4.0]}, labels=["a", "b"])
    fig = sample_figure(sample, x="x", y="y", classes=["a", "b"], query={"x": 1.5, "y": 3.5})
    legend = fig.axes[0].get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "your input"]
