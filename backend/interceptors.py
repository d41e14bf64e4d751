"""The one place where backend exceptions become gRPC status codes, for every servicer.

It also parses requests leniently: bytes that are not the method's message reach the handler as a
marker instead of failing inside grpc (which answered UNKNOWN with a Python type name and logged a
traceback per request), and become MalformedRequest here, logged as one warning per burst.

And it enforces the CallLimits (backend.limits) before any handler runs: a request larger than its
method's limit is seen by its length before it is parsed and refused as RequestTooLarge; a call
beyond the cap on calls in flight is refused as ServerBusy. grpc's own receive limit stays at the
largest method's, so the one that answers names the method's limit.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from backend.burst_log import BurstLog
from backend.exceptions import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    FruitstackError,
    InvalidArgument,
    MalformedRequest,
    NotFound,
    PermissionDenied,
    RequestTooLarge,
    ResourceExhausted,
    ServerBusy,
    Unauthenticated,
    Unavailable,
)
from backend.limits import CallLimits
from backend.messages import MAX_MESSAGE_CHARS, shorten

logger = logging.getLogger(__name__)

STATUS_CODES: dict[type[FruitstackError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    MalformedRequest: grpc.StatusCode.INTERNAL,
}


def status_code_for(exc: FruitstackError) -> grpc.StatusCode:
    """The status of the nearest mapped class in exc's hierarchy (INTERNAL for the bare base)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.INTERNAL


class _Refused:
    """Stands in for a request message that was not parsed; the handler wrapper raises its error."""

    __slots__ = ("error",)

    def __init__(self, error: FruitstackError) -> None:
        self.error = error


def _parser(
    deserializer: Callable[[bytes], Any] | None, method: str, max_bytes: int | None
) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        # Measured before parsing: a 10 MB Login costs its bytes on the wire, never a parse or a hash.
        if max_bytes is not None and len(data) > max_bytes:
            return _Refused(
                RequestTooLarge(
                    f"{method.lstrip('/')} accepts requests of at most {max_bytes:,} bytes; this one has "
                    f"{len(data):,}"
                )
            )
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Refused(
                MalformedRequest(
                    f"the request could not be parsed ({shorten(str(exc), 200)}); send the method's "
                    "protobuf message, with UTF-8 strings"
                )
            )

    return deserialize


def _check(request: Any) -> None:
    if type(request) is _Refused:
        raise request.error


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        _check(request)
        yield request


class ErrorMappingInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every handler so that raised exceptions end the call with the mapped status.

    With limits, it also refuses oversized requests and calls beyond the cap (None: no limits).
    """

    def __init__(self, limits: CallLimits | None = None) -> None:
        self._limits = limits
        # grpc asks for the handler on every call; wrapping it once per method keeps that cheap.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}
        self._malformed = BurstLog(logger)
        # A client flooding the server must not flood the log either: one warning per burst.
        self._too_large = BurstLog(logger)
        self._busy = BurstLog(logger)
        self._in_flight = 0  # counted calls being handled (one event loop: a plain int is enough)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap_handler(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _enter(self) -> None:
        """Count one more call in flight, or refuse it when the cap is reached."""
        cap = self._limits.max_concurrent_calls if self._limits is not None else None
        assert cap is not None, "only counted methods enter"
        if self._in_flight >= cap:
            raise ServerBusy(
                f"the server is busy: it handles at most {cap:,} calls at once and has that many in "
                "flight; retry shortly"
            )
        self._in_flight += 1

    async def _abort_for(
        self, exc: BaseException, context: aio.ServicerContext[Any, Any], method: str
    ) -> None:
        if isinstance(exc, FruitstackError):
            code = status_code_for(exc)
            # Messages quote client input; a last bound keeps any of them far below gRPC's 8 KB.
            message = shorten(exc.message, MAX_MESSAGE_CHARS)
            if isinstance(exc, MalformedRequest):
                self._malformed.warning(f"{method}: {message}")
            elif isinstance(exc, RequestTooLarge):
                self._too_large.warning(f"{method}: {message}")
            elif isinstance(exc, ServerBusy):
                self._busy.warning(f"{method}: {message}")
            else:
                logger.info("%s -> %s: %s", method, code.name, message)
            await context.abort(code, message)
        # Anything else is a bug: log it in full, tell the client only that it was ours.
        logger.exception("%s failed unexpectedly", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")

    def _wrap_handler(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        max_bytes = None if self._limits is None else self._limits.request_bytes_for(method)
        kwargs = {
            "request_deserializer": _parser(handler.request_deserializer, method, max_bytes),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            behavior = self._wrap_unary(handler.unary_unary, method, streaming_request=False)
            return grpc.unary_unary_rpc_method_handler(behavior, **kwargs)
        if handler.stream_unary is not None:
            behavior = self._wrap_unary(handler.stream_unary, method, streaming_request=True)
            return grpc.stream_unary_rpc_method_handler(behavior, **kwargs)
        if handler.unary_stream is not None:
            behavior = self._wrap_stream(handler.unary_stream, method, streaming_request=False)
            return grpc.unary_stream_rpc_method_handler(behavior, **kwargs)
        assert handler.stream_stream is not None
        behavior = self._wrap_stream(handler.stream_stream, method, streaming_request=True)
        return grpc.stream_stream_rpc_method_handler(behavior, **kwargs)

    def _wrap_unary(
        self, behavior: Callable[..., Any], method: str, *, streaming_request: bool
    ) -> Callable[..., Awaitable[Any]]:
        counted = self._limits is not None and self._limits.counts(method)

        async def wrapper(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            try:
                if streaming_request:
                    request = _checked_stream(request)
                else:
                    _check(request)
                if not counted:
                    return await behavior(request, context)
                self._enter()
                try:
                    return await behavior(request, context)
                finally:
                    self._in_flight -= 1
            except aio.AbortError:
                raise
            except Exception as exc:
                await self._abort_for(exc, context, method)

        return wrapper

    def _wrap_stream(
        self, behavior: Callable[..., Any], method: str, *, streaming_request: bool
    ) -> Callable[..., Any]:
        # A streaming handler is either an async generator or a coroutine that calls context.write()
        # (grpc_health's Watch is the latter); each needs its own kind of wrapper.
        if not inspect.isasyncgenfunction(behavior):
            return self._wrap_unary(behavior, method, streaming_request=streaming_request)

        counted = self._limits is not None and self._limits.counts(method)

        async def wrapper(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            entered = False
            try:
                if streaming_request:
                    request = _checked_stream(request)
                else:
                    _check(request)
                if counted:
                    self._enter()
                    entered = True
                async for response in behavior(request, context):
                    yield response
            except aio.AbortError:
                raise
            except Exception as exc:
                await self._abort_for(exc, context, method)
            finally:
                if entered:
                    self._in_flight -= 1

        return wrapper
