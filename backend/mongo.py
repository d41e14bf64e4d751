"""Bounded MongoDB operations: the one place where pymongo's errors become the backend's exceptions.

Every repository (fruits, monitoring, ...) runs its operations inside `MongoOperations.bounded`, which
limits each by the smaller of the repository's timeout and the caller's remaining deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from backend.exceptions import DeadlineExceeded, Unavailable

logger = logging.getLogger(__name__)

Document = dict[str, Any]

# Leave the gRPC layer this much of the caller's deadline to send the answer.
_DEADLINE_MARGIN_S = 0.1
# The hard stop (asyncio.timeout) comes this long after pymongo's own timeout, never with it. When
# both fired together, on uvloop the hard stop could cancel a wait for a pooled connection while
# Python 3.11's asyncio.wait_for (inside pymongo) was still cleaning up after its own timeout; the
# abandoned wait then took the pool's lock for good and every later MongoDB operation of the
# process hung (found by the soak after minutes at half load; tests/backend/test_mongo.py
# reproduces it in a second). Less than _DEADLINE_MARGIN_S, so the call's deadline still holds.
_HARD_STOP_AFTER_S = 0.05
_MIN_BUDGET_S = 0.01


class MongoOperations:
    """Bounds and error mapping for one store kept in MongoDB (`store` names it in messages)."""

    def __init__(self, client: AsyncMongoClient[Document], *, store: str, timeout_s: float) -> None:
        self._client = client
        self._store = store
        self.timeout_s = timeout_s

    @contextlib.asynccontextmanager
    async def bounded(
        self, what: str, time_left: float | None = None, *, budget_s: float | None = None, quiet: bool = False
    ) -> AsyncIterator[None]:
        """Bound one operation by the smaller of the store's timeout (or budget_s) and time_left.

        quiet: the caller logs failures itself (e.g. once per burst), so no warning here.
        """
        warn = (lambda *args: None) if quiet else logger.warning
        budget = budget_s or self.timeout_s
        if time_left is not None:
            budget = max(_MIN_BUDGET_S, min(budget, time_left - _DEADLINE_MARGIN_S))
        unavailable = f"the {self._store} (MongoDB) is unavailable; could not {what}"
        too_slow = f"the {self._store} did not answer in time; could not {what}"
        try:
            # pymongo.timeout gives precise errors, but server selection overshoots it by up to its
            # 0.5 s heartbeat pause; asyncio.timeout is the hard stop that keeps the call's deadline.
            async with asyncio.timeout(budget + _HARD_STOP_AFTER_S):
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
