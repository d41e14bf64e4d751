"""The server interceptor that enforces the policy table on every call, before any servicer runs.

It sits inside ErrorMappingInterceptor: a refused call is answered by a stand-in handler that
raises Unauthenticated or PermissionDenied, which the error mapping turns into the status, as for
any other backend error. Public methods pass through untouched, at the cost of one dict lookup.

A valid token is not enough: the user must still exist, not be disabled, hold the token's version,
and their CURRENT role (not the one in the token) must be allowed by the method's rule. That state
comes from backend.auth.user_states (cached per process for AUTH_USER_CACHE_S); it is checked as
the call's first step rather than here, because only the call knows its deadline, which bounds a
read of the state from MongoDB.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from grpc import aio

from backend.auth.policy import Rule
from backend.auth.tokens import SIGN_IN_AGAIN, Principal, TokenCodec
from backend.auth.user_states import UserStates
from backend.exceptions import FruitstackError, PermissionDenied, Unauthenticated

logger = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]

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


def authenticate(
    method: str,
    rule: Rule | None,
    token: str | None,
    *,
    tokens: TokenCodec,
    allow_anonymous_reads: bool,
) -> Principal | None:
    """The token's principal (None: anonymous, allowed), or the refusal; the user is not checked yet."""
    name = method.lstrip("/")
    if rule is None:
        raise PermissionDenied(
            f"{name} has no row in the access policy (backend/auth/policy.py), so it is refused for everyone"
        )
    if rule.roles is None:
        return None
    if token is None:
        if rule.anonymous_read and allow_anonymous_reads:
            return None
        raise Unauthenticated(f"{name} needs a signed-in user with {rule.describe()}; {HOW_TO_SIGN_IN}")
    return tokens.verify(token)


async def check_user(
    method: str, rule: Rule, principal: Principal, *, users: UserStates, time_left: float | None = None
) -> Principal:
    """The principal with the user's current role, or the refusal: a deleted or disabled user, a
    revoked token, or a current role the rule does not allow."""
    user = principal.username
    state = await users.current(user, time_left=time_left)
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
        name = method.lstrip("/")
        raise PermissionDenied(f"{name} needs {rule.describe()}; user {user!r} has role {state.role.label}")
    if state.role is principal.role:
        return principal
    return Principal(principal.username, state.role, principal.expires_at, principal.version)


async def authorize(
    method: str,
    rule: Rule | None,
    token: str | None,
    *,
    tokens: TokenCodec,
    users: UserStates,
    allow_anonymous_reads: bool,
) -> Principal | None:
    """Both steps at once: the caller's principal with their current role (None: anonymous)."""
    principal = authenticate(method, rule, token, tokens=tokens, allow_anonymous_reads=allow_anonymous_reads)
    if principal is None or rule is None:
        return None
    return await check_user(method, rule, principal, users=users)


def _checked(
    handler: grpc.RpcMethodHandler[Any, Any], check: Callable[[Context], Awaitable[object]]
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with `check(context)` awaited first, inside the call, so it has the call's deadline
    (an interceptor does not: grpc.HandlerCallDetails carries none)."""

    def wrap(behavior: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                await check(context)
                async for answer in behavior(request, context):
                    yield answer

            return stream

        async def call(request: Any, context: Context) -> Any:
            await check(context)
            return await behavior(request, context)

        return call

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **kwargs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **kwargs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **kwargs)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **kwargs)


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
        if rule is not None and rule.roles is None:
            return handler
        try:
            principal = authenticate(
                method,
                rule,
                bearer_token(handler_call_details.invocation_metadata),
                tokens=self._tokens,
                allow_anonymous_reads=self._allow_anonymous_reads,
            )
        except FruitstackError as exc:
            return _refusal(handler, exc)
        if principal is None or rule is None:
            return handler  # an anonymous read, allowed
        users, signed_in, checked_rule = self._users, principal, rule

        async def check(context: Context) -> object:
            return await check_user(
                method, checked_rule, signed_in, users=users, time_left=context.time_remaining()
            )

        return _checked(handler, check)
