"""The roles, ordered: each one may do everything the roles below it may."""

from __future__ import annotations

import enum

from fruitstack.v1 import auth_pb2

from backend.exceptions import InvalidArgument


class Role(enum.IntEnum):
    VIEWER = 1
    EDITOR = 2
    ADMIN = 3

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
            raise InvalidArgument("role must be ROLE_VIEWER, ROLE_EDITOR or ROLE_ADMIN")
        return cls(value)

    def to_proto(self) -> auth_pb2.Role.ValueType:
        # The enum values are the proto's own numbers (checked by a test).
        return auth_pb2.Role.ValueType(self.value)
