"""The frontend's exception tree: what a backend call can fail with, in the backend's own words.

    BackendError            any failed call; `message` is the backend's text, fit to show a user
    ├── InvalidRequest      the request is wrong (INVALID_ARGUMENT / OUT_OF_RANGE)
    ├── NotFound            the thing named does not exist (NOT_FOUND)
    └── Unavailable         retry later: a dependency (MongoDB, model service) is down, or the
        │                   call ran out of time (UNAVAILABLE / DEADLINE_EXCEEDED / FAILED_PRECONDITION)
        └── BackendUnreachable  the backend itself cannot be reached

frontend.client translates gRPC status codes into these in exactly one place, so no module
outside client.py ever sees a gRPC type.
"""

from __future__ import annotations


class BackendError(Exception):
    """A backend call failed; `message` says why in plain words."""

    def __init__(self, message: str, *, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def unavailable(self) -> bool:
        """True when retrying later may succeed (a service is down or slow), False for a bad request."""
        return isinstance(self, Unavailable)


class InvalidRequest(BackendError):
    """The backend refused the request as invalid."""


class NotFound(BackendError):
    """The backend has no such thing."""


class Unavailable(BackendError):
    """The backend or one of its dependencies cannot answer right now."""


class BackendUnreachable(Unavailable):
    """No connection to the backend at all."""


def user_message(exc: BaseException) -> str:
    """One sentence for the page: the backend's words for a BackendError, a generic line otherwise."""
    if isinstance(exc, BackendError):
        text = exc.message.strip() or exc.code
    else:
        text = f"unexpected error in the frontend ({type(exc).__name__}: {exc})"
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
