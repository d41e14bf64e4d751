"""Users in MongoDB (`users`), on the shared client (failed sign-ins: backend.auth.login_limits).

A user document: `_id` (the normalised username), `password_hash`, `role`, `created_at`,
`disabled` (absent: false) and `token_version` (absent: 0), the number every access token of the
user carries; raising it revokes them all (backend.auth.user_states checks it on every call).

Operations are bounded like the fruit store's (backend.fruits.repository's timeouts), and pymongo
errors leave as Unavailable / DeadlineExceeded through the same translation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pymongo
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from backend.auth.roles import Role
from backend.exceptions import AlreadyExists, NotFound
from backend.mongo import Document, MongoOperations

logger = logging.getLogger(__name__)

USERS = "users"


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: Role
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class StoredUser:
    user: User
    password_hash: str
    token_version: int


@dataclass(frozen=True, slots=True)
class UserState:
    """What authorizing a call needs to know of its user, read on every call (through a cache)."""

    role: Role
    disabled: bool
    token_version: int


# Only what UserState needs: the state is read far more often than anything else of a user.
_STATE_FIELDS = {"role": 1, "disabled": 1, "token_version": 1}
# Disabled admins do not count: they cannot administer anything.
_ACTIVE_ADMIN = {"role": int(Role.ADMIN), "disabled": {"$ne": True}}


def _to_user(doc: Document) -> User:
    return User(
        username=doc["_id"],
        role=Role(doc["role"]),
        created_at=doc["created_at"],
        disabled=bool(doc.get("disabled", False)),
    )


class UserRepository:
    """Typed, keyword-only access to users (keyed by their normalised username)."""

    def __init__(self, client: AsyncMongoClient[Document], *, database: str, timeout_s: float) -> None:
        # Shared with the other repositories and closed by its owner (backend.server.open_mongo).
        self._client = client
        self._users: AsyncCollection[Document] = client[database][USERS]
        self._mongo = MongoOperations(client, store="user store", timeout_s=timeout_s)

    async def ping(self, *, time_left: float | None = None) -> None:
        async with self._mongo.bounded("reach MongoDB", time_left):
            await self._client.admin.command("ping")

    async def get(self, *, username: str, time_left: float | None = None) -> StoredUser | None:
        async with self._mongo.bounded("read the user", time_left):
            doc = await self._users.find_one({"_id": username})
        if doc is None:
            return None
        return StoredUser(_to_user(doc), doc["password_hash"], int(doc.get("token_version", 0)))

    async def get_state(self, *, username: str, time_left: float | None = None) -> UserState | None:
        async with self._mongo.bounded("check the user", time_left):
            doc = await self._users.find_one({"_id": username}, _STATE_FIELDS)
        if doc is None:
            return None
        return UserState(
            role=Role(doc["role"]),
            disabled=bool(doc.get("disabled", False)),
            token_version=int(doc.get("token_version", 0)),
        )

    async def create(
        self,
        *,
        username: str,
        password_hash: str,
        role: Role,
        token_version: int,
        time_left: float | None = None,
    ) -> User:
        now = datetime.now(UTC)
        doc: Document = {
            "_id": username,
            "password_hash": password_hash,
            "role": int(role),
            "disabled": False,
            "token_version": token_version,
            # BSON dates hold milliseconds; truncate so the answer equals what a later read returns.
            "created_at": now.replace(microsecond=now.microsecond // 1000 * 1000),
        }
        try:
            async with self._mongo.bounded("create the user", time_left):
                await self._users.insert_one(doc)
        except DuplicateKeyError:
            raise AlreadyExists(f"a user named {username!r} exists already") from None
        return _to_user(doc)

    async def set_role(self, *, username: str, role: Role, time_left: float | None = None) -> User:
        async with self._mongo.bounded("change the role", time_left):
            doc = await self._users.find_one_and_update(
                {"_id": username}, {"$set": {"role": int(role)}}, return_document=ReturnDocument.AFTER
            )
        if doc is None:
            raise NotFound(f"no user named {username!r}")
        return _to_user(doc)

    async def set_disabled(self, *, username: str, disabled: bool, time_left: float | None = None) -> User:
        """Disable (revoking every token: enabling again does not revive them) or enable a user."""
        update: Document = {"$set": {"disabled": disabled}}
        if disabled:
            update["$inc"] = {"token_version": 1}
        async with self._mongo.bounded("disable or enable the user", time_left):
            doc = await self._users.find_one_and_update(
                {"_id": username}, update, return_document=ReturnDocument.AFTER
            )
        if doc is None:
            raise NotFound(f"no user named {username!r}")
        return _to_user(doc)

    async def set_password_hash(
        self, *, username: str, password_hash: str, revoke: bool, time_left: float | None = None
    ) -> StoredUser:
        """Store a new hash; `revoke` raises the token version (a new password), a rehash does not."""
        update: Document = {"$set": {"password_hash": password_hash}}
        if revoke:
            update["$inc"] = {"token_version": 1}
        async with self._mongo.bounded("store the password", time_left):
            doc = await self._users.find_one_and_update(
                {"_id": username}, update, return_document=ReturnDocument.AFTER
            )
        if doc is None:
            raise NotFound(f"no user named {username!r}")
        return StoredUser(_to_user(doc), doc["password_hash"], int(doc.get("token_version", 0)))

    async def replace_password_hash(
        self, *, username: str, old_hash: str, new_hash: str, time_left: float | None = None
    ) -> bool:
        """Swap a hash for a rehash of the same password, only if it is still the stored one (a
        password changed meanwhile wins); the token version stays. True when swapped."""
        async with self._mongo.bounded("upgrade the password hash", time_left):
            result = await self._users.update_one(
                {"_id": username, "password_hash": old_hash}, {"$set": {"password_hash": new_hash}}
            )
        return result.modified_count == 1

    async def delete(self, *, username: str, time_left: float | None = None) -> None:
        async with self._mongo.bounded("delete the user", time_left):
            result = await self._users.delete_one({"_id": username})
        if result.deleted_count == 0:
            raise NotFound(f"no user named {username!r}")

    async def count_admins(self, *, time_left: float | None = None) -> int:
        """Admins who can sign in (disabled ones do not count)."""
        async with self._mongo.bounded("count the admins", time_left):
            return await self._users.count_documents(_ACTIVE_ADMIN)

    async def list(self, *, time_left: float | None = None) -> list[User]:
        async with self._mongo.bounded("list users", time_left):
            docs = await self._users.find({}).sort("_id", pymongo.ASCENDING).to_list()
        return [_to_user(doc) for doc in docs]
