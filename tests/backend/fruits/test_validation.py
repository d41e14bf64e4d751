"""Unit tests of the pure input checks (names, ids, page sizes)."""

from __future__ import annotations

import pytest

from backend.exceptions import InvalidArgument
from backend.fruits.validation import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    normalize_name,
    parse_fruit_id,
    resolve_page_size,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("apple", "apple"),
        ("  Apple \n", "Apple"),
        ("cafe\u0301", "caf\u00e9"),  # NFD input becomes NFC
        ("x" * 64, "x" * 64),
        ("  " + "y" * 64 + "\t", "y" * 64),  # the limit counts after trimming
        ("e\u0301" * 64, "\u00e9" * 64),  # 128 code points in, 64 characters after NFC
        ("Fruit Salad", "Fruit Salad"),
        ('{"$gt": ""}', '{"$gt": ""}'),  # only data; the repository never parses it
        ("\U0001f34e", "\U0001f34e"),
    ],
)
def test_normalize_name_accepts(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "must not be empty"),
        ("   \t\n ", "must not be empty"),
        ("x" * 65, "65 characters long; at most 64"),
        ("x" * 5_000_000, "5000000 characters long; at most 64"),
        ("e\u0301" * 65, "65 characters long"),  # counted after NFC composes each pair
        ("a\x00b", "U+0000 at position 2"),
        ("a\tb", "U+0009"),
        ("a\x1bb", "U+001B"),
        ("a\u200bb", "U+200B"),  # zero-width space (Cf)
        ("a\u202eb", "U+202E"),  # right-to-left override (Cf)
        ("a\u2028b", "U+2028"),  # line separator (Zl)
        ("a\x7fb", "U+007F"),
    ],
)
def test_normalize_name_refuses_with_a_message(raw: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("+", r"\+").replace("$", r"\$")):
        normalize_name(raw)


def test_parse_fruit_id_round_trips() -> None:
    assert str(parse_fruit_id("6b07f3b92a33c306102f1b47")) == "6b07f3b92a33c306102f1b47"


@pytest.mark.parametrize("raw", ["", "zz", "6b07f3b92a33c306102f1b4", "6b07f3b92a33c306102f1b47x", "g" * 24])
def test_parse_fruit_id_refuses(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="id"):
        parse_fruit_id(raw)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (0, DEFAULT_PAGE_SIZE),
        (1, 1),
        (MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        (MAX_PAGE_SIZE + 1, MAX_PAGE_SIZE),
        (2**31 - 1, MAX_PAGE_SIZE),
    ],
)
def test_resolve_page_size(requested: int, expected: int) -> None:
    assert resolve_page_size(requested) == expected


def test_negative_page_size_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="must not be negative"):
        resolve_page_size(-1)
