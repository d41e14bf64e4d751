"""The frontend's exception tree: what a backend call can fail with, in the backend's own words.

    BackendError            any failed call; `message` is the backend's text, fit to show a user
    ├── InvalidRequest      the request is wrong (INVALID_ARGUMENT / OUT_OF_RANGE)
    ├── NotFound            the thing named does not exist (NOT_FOUND)
    ├── FailedPrecondition  a problem someone must fix before this can work, e.g. no model registered
    │                       or a corrupt artifact refused (FAILED_PRECONDITION); retrying will not help
    ├── NotSignedIn         no valid sign-in: none, an expired or refused token, or a wrong password
    │                       (UNAUTHENTICATED); signing in (again) helps
    ├── PermissionDenied    signed in, but the role does not allow it (PERMISSION_DENIED)
    └── Unavailable         retry later: a dependency (MongoDB, model service) is down, or the
        │                   call ran out of time (UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED)
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


class InvalidRequest(BackendError):
    """The backend refused the request as invalid."""


class NotFound(BackendError):
    """The backend has no such thing."""


class FailedPrecondition(BackendError):
    """The system is in a state that needs fixing (by a person) before the request can succeed."""


class NotSignedIn(BackendError):
    """The backend wants a (new) sign-in first."""


class PermissionDenied(BackendError):
    """The signed-in user's role does not allow the call."""


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
