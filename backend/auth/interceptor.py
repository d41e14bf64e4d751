"""The server interceptor that enforces the policy table on every call, before any servicer runs.

It sits inside ErrorMappingInterceptor: a refused call is answered by a stand-in handler that
raises Unauthenticated or PermissionDenied, which the error mapping turns into the status, as for
any other backend error. Public methods pass through untouched, at the cost of one dict lookup.

A valid token is not enough: the user must still exist, not be disabled, hold the token's version,
and their CURRENT role (not the one in the token) must be allowed by the method's rule. That state
comes from backend.auth.user_states (cached per process for AUTH_USER_CACHE_S).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc import aio

from backend.auth.policy import Rule
from backend.auth.tokens import SIGN_IN_AGAIN, Principal, TokenCodec
from backend.auth.user_states import UserStates
from backend.exceptions import FruitstackError, PermissionDenied, Unauthenticated

logger = logging.getLogger(__name__)

_BEARER = "bearer "
HOW_TO_SIGN_IN = (
    "call fruitstack.v1.AuthService/Login and send its access_token as 'authorization: Bearer <token>'"
    " metadata"
)


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the `authorization: Bearer <token>` entry, None when there is none.

    A present header in another form is an error, not "no token": the caller meant to sign in.
    """
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if not text[: len(_BEARER)].lower() == _BEARER or not text[len(_BEARER) :].strip():
                raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
            return text[len(_BEARER) :].strip()
    return None


async def authorize(
    method: str,
    rule: Rule | None,
    token: str | None,
    *,
    tokens: TokenCodec,
    users: UserStates,
    allow_anonymous_reads: bool,
) -> Principal | None:
    """The caller's principal with their current role (None: anonymous, allowed), or the refusal."""
    name = method.lstrip("/")
    if rule is None:
        raise PermissionDenied(
            f"{name} has no row in the access policy (backend/auth/policy.py), so it is refused for everyone"
        )
    if rule.role is None:
        return None
    if token is None:
        if rule.anonymous_read and allow_anonymous_reads:
            return None
        raise Unauthenticated(f"{name} needs a signed-in user with {rule.describe()}; {HOW_TO_SIGN_IN}")
    principal = tokens.verify(token)
    user = principal.username
    state = await users.current(user)
    if state is None:
        raise Unauthenticated(f"user {user!r} no longer exists; its access tokens are void")
    if state.disabled:
        raise Unauthenticated(f"user {user!r} is disabled; an admin can enable it (AuthService/EnableUser)")
    if state.token_version != principal.version:
        raise Unauthenticated(
            f"this access token of {user!r} was revoked (the password was changed or the user"
            f" disabled since it was issued); {SIGN_IN_AGAIN}"
        )
    if not rule.allows(state.role):
        raise PermissionDenied(f"{name} needs {rule.describe()}; user {user!r} has role {state.role.label}")
    if state.role is principal.role:
        return principal
    return Principal(principal.username, state.role, principal.expires_at, principal.version)


def _refusal(
    handler: grpc.RpcMethodHandler[Any, Any], exc: FruitstackError
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same kind as `handler` whose every call raises exc (mapped outside)."""

    async def refuse(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        raise exc

    # ErrorMappingInterceptor wraps a non-generator behaviour of a streaming method like a unary one,
    # so one coroutine serves all four kinds.
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse, **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    return grpc.stream_stream_rpc_method_handler(refuse, **kwargs)


class AuthInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        *,
        policy: Mapping[str, Rule],
        tokens: TokenCodec,
        users: UserStates,
        allow_anonymous_reads: bool,
    ) -> None:
        self._policy = policy
        self._tokens = tokens
        self._users = users
        self._allow_anonymous_reads = allow_anonymous_reads

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # no such method: grpc answers UNIMPLEMENTED
        method = handler_call_details.method
        rule = self._policy.get(method)
        if rule is not None and rule.role is None:
            return handler
        try:
            await authorize(
                method,
                rule,
                bearer_token(handler_call_details.invocation_metadata),
                tokens=self._tokens,
                users=self._users,
                allow_anonymous_reads=self._allow_anonymous_reads,
            )
        except FruitstackError as exc:
            return _refusal(handler, exc)
        return handler
