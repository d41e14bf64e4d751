"""Who is calling, for the record (a rollback's pin names its admin), not for authorization.

The auth interceptor has already checked the token before any servicer runs; this only reads the
name in it again.
"""

from __future__ import annotations

from typing import Any

from grpc import aio

from backend.auth.interceptor import bearer_token
from backend.auth.tokens import TokenCodec
from backend.exceptions import FruitstackError


def signed_in_name(context: aio.ServicerContext[Any, Any], tokens: TokenCodec) -> str:
    """The signed-in caller's username; "" for an anonymous caller."""
    try:
        token = bearer_token(context.invocation_metadata())  # type: ignore[arg-type]
        return tokens.verify(token).username if token else ""
    except FruitstackError:
        return ""
