"""AuthService: protobuf in, Accounts calls, protobuf out. Who may call what is the interceptor's job."""

from __future__ import annotations

import logging
from typing import Any

from fruitstack.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from backend.auth.accounts import Accounts
from backend.auth.interceptor import bearer_token
from backend.auth.repository import User
from backend.auth.roles import Role
from backend.auth.tokens import TokenCodec

logger = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]


def _user(user: User) -> auth_pb2.User:
    created_at = Timestamp()
    created_at.FromDatetime(user.created_at)
    return auth_pb2.User(username=user.username, role=user.role.to_proto(), created_at=created_at)


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, accounts: Accounts, tokens: TokenCodec) -> None:
        self._accounts = accounts
        self._tokens = tokens

    def _caller(self, context: Context) -> str:
        """The signed-in admin's name, for the log (the interceptor has already checked the token)."""
        token = bearer_token(context.invocation_metadata())  # type: ignore[arg-type]
        return self._tokens.verify(token).username if token else "?"

    async def Login(self, request: auth_pb2.LoginRequest, context: Context) -> auth_pb2.LoginResponse:
        # Several X-Forwarded-For headers count as one list (RFC 9110 section 5.3).
        forwarded = [str(v) for k, v in context.invocation_metadata() or () if k == "x-forwarded-for"]
        issued = await self._accounts.login(
            username=request.username,
            password=request.password,
            peer=context.peer(),
            forwarded_for=", ".join(forwarded) or None,
            time_left=context.time_remaining(),
        )
        expires_at = Timestamp(seconds=int(issued.principal.expires_at))
        user = auth_pb2.User(username=issued.principal.username, role=issued.principal.role.to_proto())
        return auth_pb2.LoginResponse(access_token=issued.token, expires_at=expires_at, user=user)

    async def CreateUser(
        self, request: auth_pb2.CreateUserRequest, context: Context
    ) -> auth_pb2.CreateUserResponse:
        user = await self._accounts.create_user(
            username=request.username,
            password=request.password,
            role=Role.from_proto(request.role),
            time_left=context.time_remaining(),
        )
        logger.info("%r created user %r (%s)", self._caller(context), user.username, user.role.label)
        return auth_pb2.CreateUserResponse(user=_user(user))

    async def SetUserRole(
        self, request: auth_pb2.SetUserRoleRequest, context: Context
    ) -> auth_pb2.SetUserRoleResponse:
        user = await self._accounts.set_role(
            username=request.username, role=Role.from_proto(request.role), time_left=context.time_remaining()
        )
        logger.info("%r set the role of %r to %s", self._caller(context), user.username, user.role.label)
        return auth_pb2.SetUserRoleResponse(user=_user(user))

    async def ListUsers(
        self, request: auth_pb2.ListUsersRequest, context: Context
    ) -> auth_pb2.ListUsersResponse:
        users = await self._accounts.list_users(time_left=context.time_remaining())
        return auth_pb2.ListUsersResponse(users=[_user(u) for u in users])
