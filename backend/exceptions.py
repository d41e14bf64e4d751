"""The backend's exception tree; backend.interceptors maps it to gRPC status codes in one place.

    FruitstackError
    ├── InvalidArgument     the request is wrong; retrying it unchanged will fail again
    ├── NotFound            the thing the request names does not exist
    ├── AlreadyExists       the thing the request would create exists already (a username)
    ├── Unauthenticated     no access token, or one that is invalid or expired; or a wrong password
    ├── PermissionDenied    the caller is known but its role does not allow the method (or the
    │                       method has no row in the policy table: refused until it has one)
    ├── ResourceExhausted   too many attempts (failed sign-ins from one address), or too many sign-ins
    │                       waiting for a password check; retry later
    │   ├── RequestTooLarge a request message over its method's size limit (refused before parsing)
    │   └── ServerBusy      the server is handling its maximum of calls at once; retry shortly
    ├── FailedPrecondition  the system is not in a state to answer and retrying will not change that
    │                       (the model service has no model, or refused a corrupt artifact)
    ├── Unavailable         a dependency (MongoDB, the model service) cannot be reached; retry later
    ├── DeadlineExceeded    the call ran out of time
    └── MalformedRequest    the request bytes are not the method's protobuf message (INTERNAL, as
                            gRPC's status-code guide says for a request that cannot be parsed)

The message of each exception is sent to the client, so it must say what is wrong in plain words
and never carry secrets or internals.
"""

from __future__ import annotations


class FruitstackError(Exception):
    """Base of every error the backend reports to its clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(FruitstackError):
    """The request is invalid."""


class NotFound(FruitstackError):
    """The requested resource does not exist."""


class AlreadyExists(FruitstackError):
    """The resource the request would create exists already."""


class Unauthenticated(FruitstackError):
    """The caller could not be identified: no token, a bad or expired one, or wrong credentials."""


class PermissionDenied(FruitstackError):
    """The caller is identified but may not call this method."""


class ResourceExhausted(FruitstackError):
    """The caller made too many attempts; it may try again later."""


class RequestTooLarge(ResourceExhausted):
    """The request message is larger than its method accepts (RESOURCE_EXHAUSTED, as gRPC's own cap)."""


class ServerBusy(ResourceExhausted):
    """The server is handling as many calls as it allows at once."""


class FailedPrecondition(FruitstackError):
    """The system is not in a state that allows the request."""


class Unavailable(FruitstackError):
    """A dependency cannot be reached right now."""


class DeadlineExceeded(FruitstackError):
    """The call ran out of time."""


class MalformedRequest(FruitstackError):
    """The request could not be parsed (not protobuf, or a string field that is not UTF-8)."""
