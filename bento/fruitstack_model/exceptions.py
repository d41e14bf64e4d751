"""Errors of the model service; each carries the HTTP status BentoML answers with.

BentoML turns a raised `BentoMLException` into a response with its `error_code` as the status
and `{"error": message}` in the body (messages of 5xx errors are hidden), so the class attribute
below is the one place where errors meet status codes:

    ModelServiceError            500  a bug or broken environment (message hidden)
    ├── InvalidInput             400  the request does not fit the model's schema
    ├── ModelNotFound            404  no model of that name/version in the BentoML store
    └── ModelIntegrityError      409  artifact untrusted or unusable: sha256 differs from its metadata
                                      (never unpickled), cannot be unpickled, or contradicts its metadata
"""

from __future__ import annotations

from http import HTTPStatus

from bentoml.exceptions import BentoMLException, InvalidArgument


class ModelServiceError(BentoMLException):
    """Base of every error this service raises on purpose."""

    error_code = HTTPStatus.INTERNAL_SERVER_ERROR


class InvalidInput(ModelServiceError, InvalidArgument):
    """Input that does not match the model's features: missing, unknown, not a number, not finite."""

    error_code = HTTPStatus.BAD_REQUEST


class ModelNotFound(ModelServiceError):
    """The model store holds no model of the requested name or version."""

    error_code = HTTPStatus.NOT_FOUND


class ModelIntegrityError(ModelServiceError):
    """The artifact must not or cannot be served; a sha256 mismatch is detected before unpickling."""

    error_code = HTTPStatus.CONFLICT
