"""Errors of the model service and its training script; each carries the HTTP status it answers with.

    ModelServiceError            500  a bug or broken environment
    ├── InvalidInput             400  the request does not fit the model's schema (or a bad argument)
    ├── ModelNotFound            404  no such registered model / version / champion
    ├── ModelIntegrityError      409  artifact untrusted or unusable: sha256 differs from the one
    │                                 recorded at registration (never unpickled), cannot be
    │                                 unpickled, or contradicts its metadata
    └── RegistryUnavailable      503  the MLflow registry did not answer (down, unreachable, timed out)

The class attribute `error_code` is the one place where errors meet status codes. BentoML turns a
raised `BentoMLException` into a response with that status and the message in the body, but hides
the message of 5xx errors; APIs that can meet a 5xx error on purpose (the registry being down)
answer `error_response(exc)` instead, the same `{"error": message}` body with the message kept.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from bentoml.exceptions import BentoMLException, InvalidArgument
from starlette.responses import Response


class ModelServiceError(BentoMLException):
    """Base of every error this service raises on purpose."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR


class InvalidInput(ModelServiceError, InvalidArgument):
    """Input that does not match the model's features: missing, unknown, not a number, not finite."""

    error_code = HTTPStatus.BAD_REQUEST


class ModelNotFound(ModelServiceError):
    """The registry (or the local cache) holds no such model, version or champion."""

    error_code = HTTPStatus.NOT_FOUND


class ModelIntegrityError(ModelServiceError):
    """The artifact must not or cannot be served; a sha256 mismatch is detected before unpickling."""

    error_code = HTTPStatus.CONFLICT


class RegistryUnavailable(ModelServiceError):
    """The MLflow registry cannot be reached; the service keeps serving the model it holds."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


def error_response(exc: ModelServiceError) -> Response:
    """The error as BentoML would answer it, but with the message kept for 5xx statuses too."""
    return Response(
        orjson.dumps({"error": str(exc)}), status_code=int(exc.error_code), media_type="application/json"
    )
