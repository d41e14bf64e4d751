"""Users in MongoDB (`users`), on the shared client (failed sign-ins: backend.auth.login_limits).

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


@dataclass(frozen=True, slots=True)
class StoredUser:
    user: User
    password_hash: str


def _to_user(doc: Document) -> User:
    return User(username=doc["_id"], role=Role(doc["role"]), created_at=doc["created_at"])


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
        return None if doc is None else StoredUser(_to_user(doc), doc["password_hash"])

    async def create(
        self, *, username: str, password_hash: str, role: Role, time_left: float | None = None
    ) -> User:
        now = datetime.now(UTC)
        doc: Document = {
            "_id": username,
            "password_hash": password_hash,
            "role": int(role),
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

    async def set_password_hash(
        self, *, username: str, password_hash: str, time_left: float | None = None
    ) -> None:
        async with self._mongo.bounded("change the password", time_left):
            result = await self._users.update_one(
                {"_id": username}, {"$set": {"password_hash": password_hash}}
            )
        if result.matched_count == 0:
            raise NotFound(f"no user named {username!r}")

    async def count_admins(self, *, time_left: float | None = None) -> int:
        async with self._mongo.bounded("count the admins", time_left):
            return await self._users.count_documents({"role": int(Role.ADMIN)})

    async def list(self, *, time_left: float | None = None) -> list[User]:
        async with self._mongo.bounded("list users", time_left):
            docs = await self._users.find({}).sort("_id", pymongo.ASCENDING).to_list()
        return [_to_user(doc) for doc in docs]
