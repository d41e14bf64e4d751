"""The one place where backend exceptions become gRPC status codes, for every servicer.

It also parses requests leniently: bytes that are not the method's message reach the handler as a
marker instead of failing inside grpc (which answered UNKNOWN with a Python type name and logged a
traceback per request), and become MalformedRequest here, logged as one warning per burst.
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
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
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


class _Undecodable:
    """Stands in for a request message that could not be parsed; the handler wrapper refuses it."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return deserialize


def _check(request: Any) -> None:
    if type(request) is _Undecodable:
        raise MalformedRequest(
            f"the request could not be parsed ({shorten(request.reason, 200)}); send the method's "
            "protobuf message, with UTF-8 strings"
        )


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        _check(request)
        yield request


class ErrorMappingInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every handler so that raised exceptions end the call with the mapped status."""

    def __init__(self) -> None:
        # grpc asks for the handler on every call; wrapping it once per method keeps that cheap.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}
        self._malformed = BurstLog(logger)

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

    async def _abort_for(
        self, exc: BaseException, context: aio.ServicerContext[Any, Any], method: str
    ) -> None:
        if isinstance(exc, FruitstackError):
            code = status_code_for(exc)
            # Messages quote client input; a last bound keeps any of them far below gRPC's 8 KB.
            message = shorten(exc.message, MAX_MESSAGE_CHARS)
            if isinstance(exc, MalformedRequest):
                self._malformed.warning(f"{method}: {message}")
            else:
                logger.info("%s -> %s: %s", method, code.name, message)
            await context.abort(code, message)
        # Anything else is a bug: log it in full, tell the client only that it was ours.
        logger.exception("%s failed unexpectedly", method, exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")

    def _wrap_handler(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        kwargs = {
            "request_deserializer": _lenient(handler.request_deserializer),
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
        async def wrapper(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            try:
                if streaming_request:
                    request = _checked_stream(request)
                else:
                    _check(request)
                return await behavior(request, context)
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

        async def wrapper(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            try:
                if streaming_request:
                    request = _checked_stream(request)
                else:
                    _check(request)
                async for response in behavior(request, context):
                    yield response
            except aio.AbortError:
                raise
            except Exception as exc:
                await self._abort_for(exc, context, method)

        return wrapper
