"""The roles: a ladder of human roles, and service roles beside it.

Viewer, editor and admin are ordered: each may do everything the ones below it may. A service role
(the retraining runner's) is outside the ladder: it may call only the methods whose policy row
names it, so a leaked service credential cannot read, label, roll back or manage users.
"""

from __future__ import annotations

import enum

from fruitstack.v1 import auth_pb2

from backend.exceptions import InvalidArgument


class Role(enum.IntEnum):
    VIEWER = 1
    EDITOR = 2
    ADMIN = 3
    RETRAINER = 4

    @classmethod
    def at_least(cls, role: Role) -> frozenset[Role]:
        """The human roles from `role` up the ladder (never a service role)."""
        return frozenset(r for r in HUMAN_ROLES if r >= role)

    @property
    def label(self) -> str:
        """The lower-case name used in tokens, messages, settings and the CLI."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise InvalidArgument(
                f"unknown role {text[:40]!r}; use one of {', '.join(r.label for r in cls)}"
            ) from None

    @classmethod
    def from_proto(cls, value: int) -> Role:
        if value not in auth_pb2.Role.values() or value == auth_pb2.ROLE_UNSPECIFIED:
            raise InvalidArgument("role must be ROLE_VIEWER, ROLE_EDITOR, ROLE_ADMIN or ROLE_RETRAINER")
        return cls(value)

    def to_proto(self) -> auth_pb2.Role.ValueType:
        # The enum values are the proto's own numbers (checked by a test).
        return auth_pb2.Role.ValueType(self.value)


# The ladder, lowest first; Role.RETRAINER is not on it.
HUMAN_ROLES = (Role.VIEWER, Role.EDITOR, Role.ADMIN)
