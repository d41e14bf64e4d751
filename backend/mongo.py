"""Bounded MongoDB operations: the one place where pymongo's errors become the backend's exceptions.

Every repository (fruits, monitoring, ...) runs its operations inside `MongoOperations.bounded`, which
limits each by the smaller of the repository's timeout and the caller's remaining deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pymongo
import pymongo.lock
from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)
from pymongo.server_type import SERVER_TYPE

from backend.exceptions import DeadlineExceeded, Unavailable

logger = logging.getLogger(__name__)

Document = dict[str, Any]
T = TypeVar("T")


# The signature of asyncio.wait_for, which it stands in for below.
async def _wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109
    """asyncio.wait_for as Python 3.12 has it: the awaitable runs in the caller's task."""
    async with asyncio.timeout(timeout):
        return await awaitable


# Python 3.11's asyncio.wait_for runs the awaitable as a task of its own, and when its timeout and
# a cancellation of the caller meet (CPython gh-86296; 3.12 rewrote it on asyncio.timeout) it can
# return while that task still runs. pymongo waits for a pooled connection with
# wait_for(condition.wait(), timeout): the abandoned wait later takes the pool's lock and never
# gives it back, and from then on every MongoDB operation of the process hangs. The soak met it
# after 1 to 4 minutes at half load, the bounded() hard stop below being the cancellation
# ("RuntimeError: Lock is not acquired" in the log, then DEADLINE_EXCEEDED for every MongoDB call);
# tests/backend/test_mongo.py shows it in a second. So pymongo's condition waits get 3.12's
# wait_for while the backend runs on 3.11 (and only while pymongo still uses asyncio's).
if sys.version_info < (3, 12) and getattr(pymongo.lock, "wait_for", None) is asyncio.wait_for:
    pymongo.lock.wait_for = _wait_for  # type: ignore[attr-defined,assignment]

# Leave the gRPC layer this much of the caller's deadline to send the answer.
_DEADLINE_MARGIN_S = 0.1
_MIN_BUDGET_S = 0.01


class MongoOperations:
    """Bounds and error mapping for one store kept in MongoDB (`store` names it in messages)."""

    def __init__(self, client: AsyncMongoClient[Document], *, store: str, timeout_s: float) -> None:
        self._client = client
        self._store = store
        self.timeout_s = timeout_s

    def known_down(self) -> bool:
        """Whether every server's last check failed (not merely: not checked yet, as at start)."""
        servers = self._client.topology_description.server_descriptions().values()
        return bool(servers) and all(
            s.server_type == SERVER_TYPE.Unknown and s.error is not None for s in servers
        )

    @contextlib.asynccontextmanager
    async def bounded(
        self, what: str, time_left: float | None = None, *, budget_s: float | None = None, quiet: bool = False
    ) -> AsyncIterator[None]:
        """Bound one operation by the smaller of the store's timeout (or budget_s) and time_left.

        quiet: the caller logs failures itself (e.g. once per burst), so no warning here.
        """
        warn = (lambda *args: None) if quiet else logger.warning
        if self.known_down():
            # The driver's monitor tried and reached no server: waiting out the budget would only
            # spend the caller's deadline (a frozen server would answer DEADLINE_EXCEEDED, late).
            raise Unavailable(f"the {self._store} (MongoDB) is unavailable; could not {what}")
        budget = budget_s or self.timeout_s
        if time_left is not None:
            budget = max(_MIN_BUDGET_S, min(budget, time_left - _DEADLINE_MARGIN_S))
        unavailable = f"the {self._store} (MongoDB) is unavailable; could not {what}"
        too_slow = f"the {self._store} did not answer in time; could not {what}"
        try:
            # pymongo.timeout gives precise errors, but server selection overshoots it by up to its
            # 0.5 s heartbeat pause; asyncio.timeout is the hard stop that keeps the call's deadline.
            async with asyncio.timeout(budget):
                with pymongo.timeout(budget):
                    yield
        except TimeoutError as exc:
            if not self._client.topology_description.has_readable_server():
                warn("MongoDB unreachable while trying to %s", what)
                raise Unavailable(unavailable) from exc
            raise DeadlineExceeded(too_slow) from exc
        # Order matters: the timeouts below are subclasses of ConnectionFailure.
        except ServerSelectionTimeoutError as exc:
            warn("MongoDB unreachable while trying to %s: %s", what, exc)
            raise Unavailable(unavailable) from exc
        # WaitQueueTimeoutError: every pooled connection stayed busy for the whole budget; MongoDB
        # answers, just not fast enough for the load (not a lost connection, nothing to warn about).
        except (NetworkTimeout, ExecutionTimeout, WaitQueueTimeoutError) as exc:
            raise DeadlineExceeded(too_slow) from exc
        except ConnectionFailure as exc:
            warn("lost the connection to MongoDB while trying to %s: %s", what, exc)
            raise Unavailable(unavailable) from exc
