"""Password hashes: argon2id through argon2-cffi, off the event loop, a few at a time, few waiting.

One hash costs tens of milliseconds of CPU and 64 MiB of memory (argon2-cffi's defaults, RFC 9106's
"low memory" profile), so hashing runs in threads (argon2-cffi releases the GIL) and at most
`concurrency` at once. At most `queue` more may wait: past that, `admit()` refuses at once
(RESOURCE_EXHAUSTED), so a flood of logins costs bounded memory and every waiting login a bounded
delay, instead of a queue that grows with the flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from backend.exceptions import ResourceExhausted

# Whether the current task holds an admission already (a login admits once, before its MongoDB
# work, and its verify() must not count it twice).
_admitted: contextvars.ContextVar[bool] = contextvars.ContextVar("password_hash_admitted", default=False)


class Passwords:
    def __init__(
        self, *, concurrency: int = 2, queue: int = 32, hasher: PasswordHasher | None = None
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._capacity = concurrency + queue
        self._in = 0  # admitted: hashing or waiting to
        self._dummy_hash: str | None = None

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """A place among the `concurrency + queue` callers that may hash; ResourceExhausted if none."""
        if _admitted.get():
            yield
            return
        if self._in >= self._capacity:
            raise ResourceExhausted("the server is busy checking other sign-ins; try again in a few seconds")
        self._in += 1
        token = _admitted.set(True)
        try:
            yield
        finally:
            _admitted.reset(token)
            self._in -= 1

    async def hash(self, password: str) -> str:
        with self.admit():
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
        with self.admit():
            if password_hash is None:
                if self._dummy_hash is None:
                    self._dummy_hash = await self.hash("no user has this password")
                await self._verify(self._dummy_hash, password)
                return False
            return await self._verify(password_hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
