"""argon2 hashes made with older parameters are upgraded at sign-in (real MongoDB, real argon2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from argon2 import PasswordHasher
from pymongo import AsyncMongoClient

from backend.auth.accounts import Accounts
from backend.auth.login_limits import LoginLimits, LoginPolicy
from backend.auth.passwords import Passwords
from backend.auth.repository import UserRepository
from backend.auth.roles import Role
from backend.exceptions import Unauthenticated
from backend.mongo import Document
from tests.fixtures.backend import signing_tokens

# Weaker than argon2-cffi's defaults, as a deployment's hashes made before the defaults were raised.
OLD_PARAMETERS = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@pytest.fixture
async def users(mongodb_uri: str, mongodb_database: str) -> AsyncIterator[UserRepository]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    yield UserRepository(client, database=mongodb_database, timeout_s=5)
    await client.close()


@pytest.fixture
async def limits(mongodb_uri: str, mongodb_database: str) -> AsyncIterator[LoginLimits]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    yield LoginLimits(client, database=mongodb_database, timeout_s=5, policy=LoginPolicy(free_attempts=100))
    await client.close()


def accounts(users: UserRepository, hasher: PasswordHasher, limits: LoginLimits) -> Accounts:
    return Accounts(users, tokens=signing_tokens(), passwords=Passwords(hasher=hasher), limits=limits)


async def stored_hash(users: UserRepository, name: str) -> str:
    stored = await users.get(username=name)
    assert stored is not None
    return stored.password_hash


async def test_a_sign_in_rehashes_a_hash_of_older_parameters(
    users: UserRepository, limits: LoginLimits
) -> None:
    await accounts(users, OLD_PARAMETERS, limits).create_user(
        username="pat", password="pat-password-1", role=Role.VIEWER
    )
    old_hash = await stored_hash(users, "pat")
    current = accounts(users, PasswordHasher(), limits)
    assert PasswordHasher().check_needs_rehash(old_hash)

    with pytest.raises(Unauthenticated):
        await current.login(username="pat", password="not-the-password")
    assert await stored_hash(users, "pat") == old_hash  # only a right password is rehashed

    before = await current.login(username="pat", password="pat-password-1")
    new_hash = await stored_hash(users, "pat")
    assert new_hash != old_hash
    assert not PasswordHasher().check_needs_rehash(new_hash)
    # The same password, the same sign-in state: a rehash revokes nothing.
    after = await current.login(username="pat", password="pat-password-1")
    assert after.principal.version == before.principal.version
    assert await stored_hash(users, "pat") == new_hash  # nothing more to upgrade


async def test_a_rehash_never_undoes_a_password_change_made_meanwhile(
    users: UserRepository, limits: LoginLimits
) -> None:
    await accounts(users, OLD_PARAMETERS, limits).create_user(
        username="sam", password="sam-password-1", role=Role.VIEWER
    )
    old_hash = await stored_hash(users, "sam")
    await accounts(users, PasswordHasher(), limits).reset_password(username="sam", password="sam-password-2")
    changed = await stored_hash(users, "sam")
    # A sign-in that verified the old hash just before the change lands its rehash after it.
    assert not await users.replace_password_hash(username="sam", old_hash=old_hash, new_hash="rehash-of-old")
    assert await stored_hash(users, "sam") == changed
