"""AuthService: protobuf in, Accounts calls, protobuf out. Who may call what is the interceptor's job."""

from __future__ import annotations

import logging
from typing import Any

from fruitstack.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from backend.auth.accounts import Accounts
from backend.auth.interceptor import HOW_TO_SIGN_IN, bearer_token
from backend.auth.repository import User
from backend.auth.roles import Role
from backend.auth.tokens import TokenCodec
from backend.exceptions import Unauthenticated

logger = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]


def _user(user: User) -> auth_pb2.User:
    created_at = Timestamp()
    created_at.FromDatetime(user.created_at)
    return auth_pb2.User(
        username=user.username, role=user.role.to_proto(), created_at=created_at, disabled=user.disabled
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, accounts: Accounts, tokens: TokenCodec) -> None:
        self._accounts = accounts
        self._tokens = tokens

    def _caller(self, context: Context) -> str:
        """The signed-in user's name (the interceptor has already checked the token and the user)."""
        token = bearer_token(context.invocation_metadata())  # type: ignore[arg-type]
        if token is None:
            # Only a method open to anonymous callers gets here without a token; none of these is.
            raise Unauthenticated(f"this call needs a signed-in user; {HOW_TO_SIGN_IN}")
        return self._tokens.verify(token).username

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

    async def DisableUser(
        self, request: auth_pb2.DisableUserRequest, context: Context
    ) -> auth_pb2.DisableUserResponse:
        user = await self._accounts.set_disabled(
            username=request.username, disabled=True, time_left=context.time_remaining()
        )
        logger.info("%r disabled %r", self._caller(context), user.username)
        return auth_pb2.DisableUserResponse(user=_user(user))

    async def EnableUser(
        self, request: auth_pb2.EnableUserRequest, context: Context
    ) -> auth_pb2.EnableUserResponse:
        user = await self._accounts.set_disabled(
            username=request.username, disabled=False, time_left=context.time_remaining()
        )
        logger.info("%r enabled %r", self._caller(context), user.username)
        return auth_pb2.EnableUserResponse(user=_user(user))

    async def DeleteUser(
        self, request: auth_pb2.DeleteUserRequest, context: Context
    ) -> auth_pb2.DeleteUserResponse:
        name = await self._accounts.delete_user(username=request.username, time_left=context.time_remaining())
        logger.info("%r deleted %r", self._caller(context), name)
        return auth_pb2.DeleteUserResponse()

    async def ChangePassword(
        self, request: auth_pb2.ChangePasswordRequest, context: Context
    ) -> auth_pb2.ChangePasswordResponse:
        issued = await self._accounts.change_password(
            username=self._caller(context),
            old_password=request.old_password,
            new_password=request.new_password,
            time_left=context.time_remaining(),
        )
        expires_at = Timestamp(seconds=int(issued.principal.expires_at))
        return auth_pb2.ChangePasswordResponse(access_token=issued.token, expires_at=expires_at)

    async def ResetPassword(
        self, request: auth_pb2.ResetPasswordRequest, context: Context
    ) -> auth_pb2.ResetPasswordResponse:
        user = await self._accounts.reset_password(
            username=request.username, password=request.new_password, time_left=context.time_remaining()
        )
        logger.info("%r reset the password of %r", self._caller(context), user.username)
        return auth_pb2.ResetPasswordResponse(user=_user(user))
