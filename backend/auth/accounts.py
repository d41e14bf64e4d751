"""Accounts: login (failed sign-ins limited by backend.auth.login_limits), user admin, the first admin.

The servicer and the CLI (`python -m backend.auth`) both go through this class, so a rule (the
password length, "the last admin stays an admin") holds whichever way a user is changed.
"""

from __future__ import annotations

import logging

from backend.auth.login_limits import LOCAL_CLIENT, LoginLimits
from backend.auth.passwords import Passwords
from backend.auth.repository import User, UserRepository
from backend.auth.roles import Role
from backend.auth.tokens import IssuedToken, TokenCodec
from backend.auth.validation import PASSWORD_MAX, check_new_password, normalize_username
from backend.exceptions import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)

logger = logging.getLogger(__name__)


class Accounts:
    def __init__(
        self,
        users: UserRepository,
        *,
        tokens: TokenCodec,
        passwords: Passwords,
        limits: LoginLimits,
        first_admin: tuple[str, str] | None = None,
        retrainer: tuple[str, str] | None = None,
    ) -> None:
        self._users = users
        # (username, password) of the admin to create once MongoDB answers, or None.
        self._first_admin = first_admin
        # (username, password) of the retraining runner's service account, or None.
        self._retrainer = retrainer
        self._tokens = tokens
        self._passwords = passwords
        self._limits = limits

    async def login(
        self,
        *,
        username: str,
        password: str,
        peer: str = LOCAL_CLIENT,
        forwarded_for: str | None = None,
        time_left: float | None = None,
    ) -> IssuedToken:
        """Sign in; `peer` (gRPC's context.peer()) and `forwarded_for` say where the caller is."""
        name = normalize_username(username)
        if len(password) > PASSWORD_MAX:
            raise InvalidArgument(f"password must be at most {PASSWORD_MAX} characters long")
        client = self._limits.client(peer, forwarded_for)
        # Admitted to the bounded hash queue first, so a flood is refused before it writes anything.
        with self._passwords.admit():
            attempt = await self._limits.count(username=name, client=client, time_left=time_left)
            stored = await self._users.get(username=name, time_left=time_left)
            if not await self._passwords.verify(stored.password_hash if stored else None, password):
                logger.info("failed login for %r from %s", name, client)
                # The same answer for an unknown user and a wrong password: it tells nobody which names exist.
                raise Unauthenticated("wrong username or password")
        assert stored is not None
        await self._limits.succeeded(attempt, time_left=time_left)
        return self._tokens.issue(username=name, role=stored.user.role)

    async def create_user(
        self, *, username: str, password: str, role: Role, time_left: float | None = None
    ) -> User:
        name = normalize_username(username)
        check_new_password(password)
        password_hash = await self._passwords.hash(password)
        user = await self._users.create(
            username=name, password_hash=password_hash, role=role, time_left=time_left
        )
        logger.info("user %r created with role %s", name, role.label)
        return user

    async def set_role(self, *, username: str, role: Role, time_left: float | None = None) -> User:
        name = normalize_username(username)
        current = await self._users.get(username=name, time_left=time_left)
        if current is None:
            raise NotFound(f"no user named {name!r}")
        if (
            current.user.role is Role.ADMIN
            and role is not Role.ADMIN
            and await self._users.count_admins(time_left=time_left) <= 1
        ):
            raise FailedPrecondition(
                f"{name!r} is the last admin; make another user admin before changing this one's role"
            )
        user = await self._users.set_role(username=name, role=role, time_left=time_left)
        logger.info("user %r now has role %s", name, role.label)
        return user

    async def list_users(self, *, time_left: float | None = None) -> list[User]:
        return await self._users.list(time_left=time_left)

    async def check(self, *, time_left: float | None = None) -> None:
        """The health probe of AuthService: MongoDB answers; the first admin exists once it does.

        Done here rather than before the server starts, because the backend starts (and reports
        NOT_SERVING) while MongoDB is down, and creates the first admin when it comes back.
        """
        await self._users.ping(time_left=time_left)
        await self._limits.prepare(time_left=time_left)
        if self._first_admin is not None:
            username, password = self._first_admin
            if await self.ensure_admin(username=username, password=password):
                logger.info("first admin %r created (FIRST_ADMIN_USERNAME / FIRST_ADMIN_PASSWORD)", username)
            self._first_admin = None
        if self._retrainer is not None:
            username, password = self._retrainer
            try:
                await self.ensure_service_account(username=username, password=password, role=Role.RETRAINER)
            except FailedPrecondition as exc:
                # A configuration error, not an outage: the rest of the backend serves on.
                logger.error("no retrainer service account: %s", exc.message)
            self._retrainer = None

    async def ensure_service_account(self, *, username: str, password: str, role: Role) -> None:
        """Make `username` a `role` service account with this password, whatever it was before.

        The password comes from a secret file that its service reads too, so that file is the truth:
        a rotated file takes effect at the backend's next start. A human account of the same name is
        never turned into a service account (nor its password changed): that is refused loudly.
        """
        name = normalize_username(username)
        stored = await self._users.get(username=name)
        if stored is None:
            try:
                await self.create_user(username=name, password=password, role=role)
                logger.info("service account %r created with role %s", name, role.label)
                return
            except AlreadyExists:
                stored = await self._users.get(username=name)  # another replica was faster
                assert stored is not None
        if stored.user.role is not role:
            raise FailedPrecondition(
                f"{name!r} is a user with role {stored.user.role.label}, not the {role.label} service"
                " account; give the service account another name (RETRAINER_USERNAME)"
            )
        if not await self._passwords.verify(stored.password_hash, password):
            check_new_password(password)
            await self._users.set_password_hash(
                username=name, password_hash=await self._passwords.hash(password)
            )
            logger.info("service account %r: password changed to the one in its secret file", name)

    async def ensure_admin(self, *, username: str, password: str) -> bool:
        """Create `username` as an admin unless a user of that name exists; True when created."""
        name = normalize_username(username)
        if await self._users.get(username=name) is not None:
            return False
        try:
            await self.create_user(username=name, password=password, role=Role.ADMIN)
        except AlreadyExists:
            return False  # another replica was faster
        return True
