"""Health status per service: names, and a task that keeps a service's status in step with a dependency."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from grpc_health.v1 import health_pb2

from backend.exceptions import FruitstackError

logger = logging.getLogger(__name__)

OVERALL = ""
FRUIT_SERVICE = "fruitstack.v1.FruitService"
PREDICTION_SERVICE = "fruitstack.v1.PredictionService"
AUTH_SERVICE = "fruitstack.v1.AuthService"
MONITORING_SERVICE = "fruitstack.v1.MonitoringService"

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# A probe returns when the dependency works and raises a FruitstackError (e.g. Unavailable) when not.
Probe = Callable[[], Awaitable[None]]


class DependencyWatcher:
    """Probes a dependency every interval and sets a service (and `also` these) SERVING or NOT_SERVING.

    It never gives up, so a service recovers on its own when its dependency comes back.
    """

    def __init__(
        self, *, service: str, probe: Probe, health: Any, interval_s: float, also: tuple[str, ...] = ()
    ) -> None:
        # `health` is grpc_health's asyncio HealthServicer (untyped upstream).
        self.service = service
        self.services = (service, *also)
        self._probe = probe
        self._health = health
        self._interval_s = interval_s
        self._healthy: bool | None = None

    async def check_once(self) -> bool:
        try:
            await self._probe()
        except FruitstackError as exc:
            healthy, reason = False, exc.message
        except Exception as exc:
            # A probe bug must not kill the watcher; report the service down and keep trying.
            logger.exception("health probe for %s failed unexpectedly", self.service)
            healthy, reason = False, repr(exc)
        else:
            healthy, reason = True, ""
        if healthy != self._healthy:
            if healthy:
                logger.info("%s is SERVING", self.service)
            else:
                logger.warning("%s is NOT_SERVING: %s", self.service, reason)
            self._healthy = healthy
        for service in self.services:
            await self._health.set(service, SERVING if healthy else NOT_SERVING)
        return healthy

    async def run(self) -> None:
        task = asyncio.current_task()
        while True:
            await self.check_once()
            # A client library may turn a cancel that lands inside the probe into an ordinary error
            # (which check_once reports as NOT_SERVING); honour it here so stop() never waits forever.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(self._interval_s)
