"""Pure checks of client input: fruit names, fruit ids and page sizes. Each raises InvalidArgument."""

from __future__ import annotations

import unicodedata

from bson import ObjectId
from bson.errors import InvalidId

from backend.exceptions import InvalidArgument
from backend.messages import shorten

NAME_MAX_CHARS = 64
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# Control (Cc), format (Cf: zero-width and bidi overrides, which make names that look alike
# differ), surrogates (Cs) and line/paragraph separators would all break a one-line label.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def normalize_name(raw: str) -> str:
    """Trim and NFC-normalise a fruit name; refuse it if empty, too long or holding control chars."""
    stripped = raw.strip()
    # NFC can shorten a name (letters + combining marks), but never 16-fold: refuse huge input
    # before normalising it, since the server accepts large messages (for PredictBatch).
    if len(stripped) > 16 * NAME_MAX_CHARS:
        raise InvalidArgument(
            f"name is {len(stripped)} characters long; at most {NAME_MAX_CHARS} are allowed"
        )
    name = unicodedata.normalize("NFC", stripped)
    if not name:
        raise InvalidArgument("name must not be empty or only whitespace")
    if len(name) > NAME_MAX_CHARS:
        raise InvalidArgument(f"name is {len(name)} characters long; at most {NAME_MAX_CHARS} are allowed")
    for position, char in enumerate(name, start=1):
        category = unicodedata.category(char)
        if category in _FORBIDDEN_CATEGORIES:
            raise InvalidArgument(
                f"name contains a control or invisible character U+{ord(char):04X} at position {position}"
            )
    return name


def parse_fruit_id(raw: str) -> ObjectId:
    """The ObjectId a fruit id stands for (ids are 24 hex digits)."""
    if not raw:
        raise InvalidArgument("id must not be empty")
    try:
        return ObjectId(raw)
    except (InvalidId, TypeError):
        raise InvalidArgument(
            f"id {shorten(raw)!r} is not a fruit id (expected 24 hexadecimal digits)"
        ) from None


def resolve_page_size(requested: int) -> int:
    """AIP-158: 0 means the default, values above the maximum are coerced, negatives are refused."""
    if requested < 0:
        raise InvalidArgument(f"page_size must not be negative (got {requested})")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)
