"""Each signed-in user's current state (role, disabled, token version), cached per process.

Every authenticated call needs it (backend.auth.interceptor), the prediction path included, so
it is read from MongoDB at most once per user every AUTH_USER_CACHE_S seconds, and concurrent
calls of one user share one read. A change made through this process (AuthService or Accounts)
forgets the user's entry at once; a change made by another replica or the CLI is seen here within
AUTH_USER_CACHE_S (plus one read).

While MongoDB cannot be reached, the last state read stays in force: predictions keep working
through an outage (a fault the suite injects), at the price that a change made while this process
cannot read MongoDB takes effect when it can again. A user with no state read yet is refused
(UNAVAILABLE) rather than let in unchecked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.auth.repository import UserRepository, UserState
from backend.exceptions import DeadlineExceeded, Unavailable

logger = logging.getLogger(__name__)

# How long a call waits for a refresh of a state it already has before it goes on with the old one.
# A healthy read takes about a millisecond; a frozen MongoDB holds a read for MONGODB_TIMEOUT_MS,
# which must not become the latency of every call of every user (the refresh goes on behind).
STALE_REFRESH_WAIT_S = 0.25


@dataclass(slots=True)
class _Entry:
    state: UserState | None  # None: no such user
    read_at: float  # monotonic


class UserStates:
    def __init__(
        self, users: UserRepository, *, cache_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._users = users
        self._cache_s = cache_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._reads: dict[str, asyncio.Task[UserState | None]] = {}
        # Raised by forget(): a read that started before a change must not store what it read.
        self._changes: dict[str, int] = {}

    async def current(self, username: str, *, time_left: float | None = None) -> UserState | None:
        """The user's state (None: no such user); Unavailable when it was never read and cannot be.

        time_left: the call's deadline, which bounds the read when this call starts one.
        """
        entry = self._entries.get(username)
        if entry is not None and self._clock() - entry.read_at < self._cache_s:
            return entry.state
        read = self._reads.get(username)
        if read is None:
            read = asyncio.create_task(self._read(username, time_left), name="user-state")
            # Retrieved here, so a failed read nobody waited for to the end is not logged as lost.
            read.add_done_callback(lambda task: task.cancelled() or task.exception())
            self._reads[username] = read
        try:
            if entry is None:
                return await asyncio.shield(read)
            return await asyncio.wait_for(asyncio.shield(read), STALE_REFRESH_WAIT_S)
        except (Unavailable, DeadlineExceeded, TimeoutError) as exc:
            if entry is None:
                reason = exc.message if isinstance(exc, Unavailable | DeadlineExceeded) else "no answer"
                raise Unavailable(f"cannot check the account of {username!r}: {reason}") from None
            logger.warning("user state of %r not refreshed (%r); keeping the last one read", username, exc)
            return entry.state

    def forget(self, username: str) -> None:
        """Drop the cached state (and any read in flight), so the next call reads the change."""
        self._entries.pop(username, None)
        self._reads.pop(username, None)
        self._changes[username] = self._changes.get(username, 0) + 1

    async def _read(self, username: str, time_left: float | None) -> UserState | None:
        changes = self._changes.get(username, 0)
        task = asyncio.current_task()
        try:
            state = await self._users.get_state(username=username, time_left=time_left)
        finally:
            if self._reads.get(username) is task:
                del self._reads[username]
        if self._changes.get(username, 0) == changes:
            self._entries[username] = _Entry(state, self._clock())
        return state
