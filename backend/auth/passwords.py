"""Password hashes: argon2id through argon2-cffi, off the event loop and a few at a time.

One hash costs tens of milliseconds of CPU and 64 MiB of memory (argon2-cffi's defaults, RFC 9106's
"low memory" profile), so hashing runs in threads (argon2-cffi releases the GIL) and at most
`concurrency` at once: a burst of logins queues instead of taking all memory or every core.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    def __init__(self, *, concurrency: int = 2, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than this hasher's (argon2-cffi reads them
        from the hash itself, no hashing), so a sign-in should store a new one."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return False  # not an argon2 hash at all: nobody can sign in with it anyway

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether password matches the hash; None (no such user) costs as much as a real check.

        Checking against a dummy hash keeps "no such user" and "wrong password" equally slow, so
        the time of an answer does not tell which usernames exist.
        """
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("no user has this password")
            password_hash = self._dummy_hash
            await self._verify(password_hash, password)
            return False
        return await self._verify(password_hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
