"""What every MongoDB repository shares: the document type and one bounded, translated operation.

pymongo's errors never leave a repository: they become Unavailable or DeadlineExceeded here, with a
message naming the store ("the fruit store", "the user store") and what could not be done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pymongo
from pymongo import AsyncMongoClient
from pymongo.errors import ConnectionFailure, ExecutionTimeout, NetworkTimeout, ServerSelectionTimeoutError

from backend.exceptions import DeadlineExceeded, Unavailable

logger = logging.getLogger(__name__)

Document = dict[str, Any]

# Leave the gRPC layer this much of the caller's deadline to send the answer.
_DEADLINE_MARGIN_S = 0.1
_MIN_BUDGET_S = 0.01


@contextlib.asynccontextmanager
async def bounded_operation(
    client: AsyncMongoClient[Document],
    what: str,
    *,
    timeout_s: float,
    time_left: float | None,
    store: str,
) -> AsyncIterator[None]:
    """Bound one operation by the smaller of timeout_s and the caller's remaining time."""
    budget = timeout_s
    if time_left is not None:
        budget = max(_MIN_BUDGET_S, min(budget, time_left - _DEADLINE_MARGIN_S))
    unavailable = f"{store} (MongoDB) is unavailable; could not {what}"
    try:
        # pymongo.timeout gives precise errors, but server selection overshoots it by up to its
        # 0.5 s heartbeat pause; asyncio.timeout is the hard stop that keeps the call's deadline.
        async with asyncio.timeout(budget):
            with pymongo.timeout(budget):
                yield
    except TimeoutError as exc:
        if not client.topology_description.has_readable_server():
            logger.warning("MongoDB unreachable while trying to %s", what)
            raise Unavailable(unavailable) from exc
        raise DeadlineExceeded(f"{store} did not answer in time; could not {what}") from exc
    # Order matters: the timeouts below are subclasses of ConnectionFailure.
    except ServerSelectionTimeoutError as exc:
        logger.warning("MongoDB unreachable while trying to %s: %s", what, exc)
        raise Unavailable(unavailable) from exc
    except (NetworkTimeout, ExecutionTimeout) as exc:
        raise DeadlineExceeded(f"{store} did not answer in time; could not {what}") from exc
    except ConnectionFailure as exc:
        logger.warning("lost the connection to MongoDB while trying to %s: %s", what, exc)
        raise Unavailable(unavailable) from exc
