"""The few calls of Prefect's REST API that retraining needs, over one aiohttp session.

Every failure becomes a backend exception: no answer (refused, timed out) is Unavailable, naming
Prefect; an answer with an error status is Unavailable too, with Prefect's words (a 4xx here is our
bug or a Prefect of another version, and retrying later is the only thing a client can do).

Prefect answers 503 while its SQLite database is locked by another write (two runs asked for at
once did that here), and its own client retries 429/502/503; so does this one, a few times within
the call's time. Creating a run carries an idempotency key, so a retry never makes a second run.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from backend.exceptions import Unavailable
from backend.messages import shorten

RUNNING_STATES = ("PENDING", "RUNNING", "CANCELLING")
# Statuses that mean "busy, ask again", and the pauses before asking again.
_RETRY_STATUSES = {429, 502, 503}
_RETRY_DELAYS_S = (0.1, 0.3, 0.8)


@dataclass(frozen=True)
class Deployment:
    id: str
    name: str  # FLOW/NAME
    paused: bool
    interval_s: float  # of the first active interval schedule; 0 when there is none


@dataclass(frozen=True)
class FlowRun:
    id: str
    name: str
    state_type: str  # SCHEDULED, PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, CRASHED, ...
    state_name: str  # Scheduled, Late, AwaitingConcurrencySlot, Running, ...
    state_message: str
    parameters: dict[str, Any] = field(repr=False)
    auto_scheduled: bool  # created by the deployment's schedule
    expected_start_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _flow_run(doc: dict[str, Any]) -> FlowRun:
    state = doc.get("state") or {}
    return FlowRun(
        id=str(doc["id"]),
        name=str(doc.get("name") or ""),
        state_type=str(state.get("type") or doc.get("state_type") or ""),
        state_name=str(state.get("name") or doc.get("state_name") or ""),
        state_message=str(state.get("message") or ""),
        parameters=dict(doc.get("parameters") or {}),
        auto_scheduled=bool(doc.get("auto_scheduled")),
        expected_start_time=_time(doc.get("expected_start_time")),
        start_time=_time(doc.get("start_time")),
        end_time=_time(doc.get("end_time")),
    )


class PrefectApi:
    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 2.0))
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, what: str, body: Any = None) -> Any:
        """The decoded JSON answer, or None for a 404."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            for delay in (*_RETRY_DELAYS_S, None):
                async with self._session.request(method, f"{self.url}{path}", json=body) as response:
                    if delay is None or response.status not in _RETRY_STATUSES:
                        return await self._answer(response, what)
                await asyncio.sleep(delay)
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise Unavailable(
                f"Prefect at {self.url} is unavailable ({shorten(reason, 200)}); could not {what}"
            ) from exc
        raise AssertionError("unreachable: the last attempt always answers")

    async def _answer(self, response: aiohttp.ClientResponse, what: str) -> Any:
        if response.status == 404:
            return None
        if response.status >= 400:
            text = shorten(await response.text(), 300)
            raise Unavailable(f"Prefect at {self.url} refused to {what}: HTTP {response.status} {text}")
        return await response.json()

    async def deployment(self, name: str) -> Deployment | None:
        """The deployment FLOW/NAME, or None when Prefect has none of that name."""
        flow, _, deployment = name.partition("/")
        path = f"/deployments/name/{quote(flow, safe='')}/{quote(deployment, safe='')}"
        doc = await self._request("GET", path, f"look up the deployment {name!r}")
        if doc is None:
            return None
        intervals = [
            float(s["schedule"]["interval"])
            for s in doc.get("schedules") or ()
            if s.get("active", True) and "interval" in (s.get("schedule") or {})
        ]
        return Deployment(
            id=str(doc["id"]),
            name=name,
            paused=bool(doc.get("paused")),
            interval_s=intervals[0] if intervals else 0.0,
        )

    async def create_flow_run(
        self, deployment: Deployment, *, parameters: dict[str, Any], tags: list[str]
    ) -> FlowRun:
        doc = await self._request(
            "POST",
            f"/deployments/{deployment.id}/create_flow_run",
            f"create a run of {deployment.name!r}",
            {"parameters": parameters, "tags": tags, "idempotency_key": str(uuid.uuid4())},
        )
        if doc is None:
            raise Unavailable(f"Prefect at {self.url} lost the deployment {deployment.name!r} meanwhile")
        return _flow_run(doc)

    async def flow_runs(
        self,
        deployment: Deployment,
        *,
        limit: int,
        state_types: tuple[str, ...] | None = None,
        not_state_types: tuple[str, ...] | None = None,
        sort: str = "EXPECTED_START_TIME_DESC",
    ) -> list[FlowRun]:
        state: dict[str, Any] = {}
        if state_types:
            state["any_"] = list(state_types)
        if not_state_types:
            state["not_any_"] = list(not_state_types)
        body: dict[str, Any] = {
            "deployments": {"id": {"any_": [deployment.id]}},
            "sort": sort,
            "limit": limit,
        }
        if state:
            body["flow_runs"] = {"state": {"type": state}}
        docs = await self._request("POST", "/flow_runs/filter", f"list the runs of {deployment.name!r}", body)
        return [_flow_run(doc) for doc in docs or ()]
