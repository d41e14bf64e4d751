"""Bounded text for messages built from client input: a few names, then "and N more".

Every error message goes back to the client as the gRPC status message (trailing metadata, which
clients refuse beyond 8 KB by default) and into the log, so none may grow with the request.
"""

from __future__ import annotations

from collections.abc import Sequence

NAMES_LISTED = 5
CHARS_SHOWN = 40
# A last bound in the interceptor, for any message: far above what a sentence needs, far below 8 KB.
MAX_MESSAGE_CHARS = 1000


def shorten(text: str, limit: int = CHARS_SHOWN) -> str:
    """text, or its first `limit` characters and "..."."""
    return text if len(text) <= limit else text[:limit] + "..."


def name_list(names: Sequence[str], *, limit: int = NAMES_LISTED, quote: bool = False) -> str:
    """'a, b, c' for a few names; 'a, b, c, d, e and 7 more' for many; each name shortened."""
    shown = [shorten(name) for name in names[:limit]]
    text = ", ".join(repr(name) for name in shown) if quote else ", ".join(shown)
    more = len(names) - limit
    return f"{text} and {more} more" if more > 0 else text
