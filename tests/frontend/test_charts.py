"""Text from data reaches the charts verbatim: a `$` in a fruit's name is never mathtext."""

from __future__ import annotations

import io

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from frontend.charts import counts_figure, literal
from frontend.client import FruitCount

ALPHA = r"$\alpha$"


def drawn(fig: Figure) -> Figure:
    """Draw the figure as render.plot does (to PNG), so a text that cannot be drawn raises here."""
    fig.savefig(io.BytesIO(), format="png")
    return fig


def width(text: Text) -> float:
    return float(text.get_window_extent().width)


def test_a_fruit_named_like_mathtext_is_drawn_as_its_characters() -> None:
    fig = drawn(counts_figure([FruitCount(ALPHA, 2), FruitCount("apple", 1)]))
    label = next(t for t in fig.axes[0].get_yticklabels() if t.get_text() == literal(ALPHA))
    # The same characters with mathtext off, and as mathtext (what the name drew as before).
    as_text = fig.text(0, 0, ALPHA, parse_math=False, fontproperties=label.get_fontproperties())
    as_math = fig.text(0, 0, ALPHA, fontproperties=label.get_fontproperties())
    drawn(fig)
    assert width(label) == pytest.approx(width(as_text))
    assert width(as_math) < width(as_text) / 2  # one Greek letter: the check can tell them apart


@pytest.mark.parametrize("name", [r"$\notacommand$", "$", "$$", r"a\$b$", "$^{$"])
def test_no_fruit_name_breaks_the_chart(name: str) -> None:
    # As mathtext the first and last of these do not parse, and drawing the chart raised for everyone.
    drawn(counts_figure([FruitCount(name, 1)]))


def test_literal_keeps_every_character() -> None:
    fig = Figure()
    for name in [ALPHA, r"a\$b", "$$", "no dollars", r"\\$x$"]:
        shown = fig.text(0, 0, literal(name))
        drawn(fig)
        # What matplotlib draws for the escaped text is the name, character for character.
        assert width(shown) == pytest.approx(width(fig.text(0, 0, name, parse_math=False)))
