"""Accounts: login (failed sign-ins limited by backend.auth.login_limits), user admin, the first admin.

The servicer and the CLI (`python -m backend.auth`) both go through this class, so a rule (the
password length, "the last admin stays an admin") holds whichever way a user is changed. Every
change forgets the user's cached state in this process (backend.auth.user_states), so it applies to
the next call here at once.
"""

from __future__ import annotations

import logging
import secrets

from backend.auth.login_limits import LOCAL_CLIENT, LoginLimits
from backend.auth.passwords import Passwords
from backend.auth.repository import StoredUser, User, UserRepository
from backend.auth.roles import Role
from backend.auth.tokens import IssuedToken, TokenCodec
from backend.auth.user_states import UserStates
from backend.auth.validation import PASSWORD_MAX, check_new_password, normalize_username
from backend.exceptions import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
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
        states: UserStates | None = None,
    ) -> None:
        self._users = users
        # The server passes the cache its interceptor reads; alone (the CLI, tests), a cache nobody shares.
        self._states = states or UserStates(users, cache_s=0)
        # (username, password) of the admin to create once MongoDB answers, or None.
        self._first_admin = first_admin
        # (username, password) of the retraining runner's service account, or None.
        self._retrainer = retrainer
        self._tokens = tokens
        self._passwords = passwords
        self._limits = limits

    @property
    def states(self) -> UserStates:
        """The per-process cache of users' states that the policy interceptor checks every call with."""
        return self._states

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
        if stored.user.disabled:
            raise Unauthenticated(f"user {name!r} is disabled; an admin can enable it")
        await self._upgrade_hash(name, stored.password_hash, password, time_left=time_left)
        return self._tokens.issue(username=name, role=stored.user.role, version=stored.token_version)

    async def _upgrade_hash(
        self, name: str, password_hash: str, password: str, *, time_left: float | None
    ) -> None:
        """Rehash a password made with older argon2 parameters, now that we hold it (at sign-in)."""
        if not self._passwords.needs_rehash(password_hash):
            return
        try:
            new_hash = await self._passwords.hash(password)
            swapped = await self._users.replace_password_hash(
                username=name, old_hash=password_hash, new_hash=new_hash, time_left=time_left
            )
        except (Unavailable, DeadlineExceeded) as exc:
            # The sign-in itself succeeded; the upgrade waits for the next one.
            logger.warning("password hash of %r not upgraded: %s", name, exc.message)
            return
        if swapped:
            logger.info("password hash of %r upgraded to the current argon2 parameters", name)

    async def create_user(
        self, *, username: str, password: str, role: Role, time_left: float | None = None
    ) -> User:
        name = normalize_username(username)
        check_new_password(password)
        password_hash = await self._passwords.hash(password)
        # A random first version: the tokens of a deleted user never fit a new user of that name.
        user = await self._users.create(
            username=name,
            password_hash=password_hash,
            role=role,
            token_version=secrets.randbits(31),
            time_left=time_left,
        )
        self._states.forget(name)
        logger.info("user %r created with role %s", name, role.label)
        return user

    async def set_role(self, *, username: str, role: Role, time_left: float | None = None) -> User:
        name = normalize_username(username)
        current = await self._users.get(username=name, time_left=time_left)
        if current is None:
            raise NotFound(f"no user named {name!r}")
        if role is not Role.ADMIN:
            await self._keep_an_admin(current.user, "changing this one's role", time_left=time_left)
        user = await self._users.set_role(username=name, role=role, time_left=time_left)
        self._states.forget(name)  # the role is read on every call: the new one applies at once
        logger.info("user %r now has role %s", name, role.label)
        return user

    async def set_disabled(self, *, username: str, disabled: bool, time_left: float | None = None) -> User:
        """Disable a user (their tokens are refused from their next call; enabling them again does
        not bring those tokens back) or enable one. The last admin who can sign in stays enabled."""
        name = normalize_username(username)
        current = await self._users.get(username=name, time_left=time_left)
        if current is None:
            raise NotFound(f"no user named {name!r}")
        if disabled:
            await self._keep_an_admin(current.user, "disabling this one", time_left=time_left)
        user = await self._users.set_disabled(username=name, disabled=disabled, time_left=time_left)
        self._states.forget(name)
        logger.info("user %r %s", name, "disabled" if disabled else "enabled")
        return user

    async def delete_user(self, *, username: str, time_left: float | None = None) -> str:
        """Delete a user (their tokens are refused from their next call; never the last admin); the
        stored name."""
        name = normalize_username(username)
        current = await self._users.get(username=name, time_left=time_left)
        if current is None:
            raise NotFound(f"no user named {name!r}")
        await self._keep_an_admin(current.user, "deleting this one", time_left=time_left)
        await self._users.delete(username=name, time_left=time_left)
        self._states.forget(name)
        logger.info("user %r deleted", name)
        return name

    async def change_password(
        self, *, username: str, old_password: str, new_password: str, time_left: float | None = None
    ) -> IssuedToken:
        """A user's own change: the old password must match. Every token issued before is revoked;
        the answer is a new token, so the caller stays signed in."""
        name = normalize_username(username)
        check_new_password(new_password)
        if len(old_password) > PASSWORD_MAX:
            raise InvalidArgument(f"password must be at most {PASSWORD_MAX} characters long")
        stored = await self._users.get(username=name, time_left=time_left)
        if stored is None or not await self._passwords.verify(stored.password_hash, old_password):
            raise Unauthenticated("the current password is wrong; the password was not changed")
        if old_password == new_password:
            raise InvalidArgument("the new password is the current one; choose another")
        changed = await self._store_password(name, new_password, time_left=time_left)
        logger.info("user %r changed their password", name)
        return self._tokens.issue(username=name, role=changed.user.role, version=changed.token_version)

    async def reset_password(self, *, username: str, password: str, time_left: float | None = None) -> User:
        """An admin sets another user's password (no old one needed); the user's tokens are revoked."""
        name = normalize_username(username)
        check_new_password(password)
        changed = await self._store_password(name, password, time_left=time_left)
        logger.info("the password of %r was reset", name)
        return changed.user

    async def _store_password(self, name: str, password: str, *, time_left: float | None) -> StoredUser:
        password_hash = await self._passwords.hash(password)
        changed = await self._users.set_password_hash(
            username=name, password_hash=password_hash, revoke=True, time_left=time_left
        )
        self._states.forget(name)
        return changed

    async def _keep_an_admin(self, user: User, doing: str, *, time_left: float | None) -> None:
        """Refuse a change that would leave no admin who can sign in."""
        if (
            user.role is Role.ADMIN
            and not user.disabled
            and await self._users.count_admins(time_left=time_left) <= 1
        ):
            raise FailedPrecondition(
                f"{user.username!r} is the last admin; make another user admin before {doing}"
            )

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
            await self._store_password(name, password, time_left=None)
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
