"""Pure checks of usernames and passwords, with messages fit to send to the client."""

from __future__ import annotations

import re

from backend.exceptions import InvalidArgument

USERNAME_MAX = 64
PASSWORD_MIN = 12
# argon2 hashes any length, but a megabyte password per request would be a cheap way to burn CPU.
PASSWORD_MAX = 1024

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def normalize_username(raw: str) -> str:
    """The stored form of a username: trimmed and lower-case; InvalidArgument if it is not one."""
    name = raw.strip().lower()
    if not name:
        raise InvalidArgument("username must not be empty")
    if len(name) > USERNAME_MAX:
        raise InvalidArgument(f"username is {len(name)} characters long; at most {USERNAME_MAX} are allowed")
    if not _USERNAME.fullmatch(name):
        raise InvalidArgument(
            "username may contain only letters, digits, '.', '_' and '-', and must start with a"
            " letter or digit"
        )
    return name


def check_new_password(password: str) -> str:
    """A password for a new user: long enough, not absurdly long, not only whitespace."""
    if len(password) < PASSWORD_MIN or not password.strip():
        raise InvalidArgument(f"password must be at least {PASSWORD_MIN} characters long")
    if len(password) > PASSWORD_MAX:
        raise InvalidArgument(f"password must be at most {PASSWORD_MAX} characters long")
    return password
