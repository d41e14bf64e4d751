"""The gRPC server and its one wiring.

`open_backend(settings)` builds every dependency (one MongoDB client shared by every repository, the
model client, the accounts) and the server around them, and closes them in order; `serve()`, the
test fixtures and the benchmarks all go through it. `open_mongo` and `open_accounts` are its user
half, which the user CLI (`python -m backend.auth`) uses without a server. `create_server`
registers the services on a grpc.aio server, behind the error mapping and the policy interceptor.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from fruitstack.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    fruits_pb2,
    fruits_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    predictions_pb2,
    predictions_pb2_grpc,
    retraining_pb2,
    retraining_pb2_grpc,
)
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer  # the asyncio servicer (health.aio)
from grpc_reflection.v1alpha import reflection
from pymongo import AsyncMongoClient

from backend.auth.accounts import Accounts
from backend.auth.interceptor import AuthInterceptor
from backend.auth.login_limits import LoginLimits, LoginPolicy
from backend.auth.passwords import Passwords
from backend.auth.policy import POLICY
from backend.auth.repository import UserRepository
from backend.auth.servicer import AuthServicer
from backend.auth.tokens import TokenCodec
from backend.auth.user_states import UserStates
from backend.config import Settings
from backend.fruits.page_tokens import PageTokenCodec
from backend.fruits.repository import FruitRepository
from backend.fruits.servicer import FruitServicer
from backend.health_watcher import (
    AUTH_SERVICE,
    FRUIT_SERVICE,
    MONITORING_SERVICE,
    NOT_SERVING,
    OVERALL,
    PREDICTION_SERVICE,
    SERVING,
    DependencyWatcher,
)
from backend.interceptors import ErrorMappingInterceptor
from backend.limits import CallLimits
from backend.mongo import Document
from backend.monitoring.monitor import Monitor
from backend.monitoring.prediction_log import PredictionLog
from backend.monitoring.repository import MonitoringRepository
from backend.monitoring.servicer import MonitoringServicer
from backend.prediction import ModelClient, Predictor
from backend.prediction.servicer import PredictionServicer
from backend.retraining.prefect_api import PrefectApi
from backend.retraining.repository import RetrainingRepository
from backend.retraining.retrainer import Retrainer
from backend.retraining.servicer import RetrainingServicer

logger = logging.getLogger(__name__)

# PredictBatch answers to chunks of 100k rows are a few MB; gRPC's default cap is 4 MB. What the
# server receives is bounded per method (backend.limits, MAX_*_REQUEST_BYTES).
MAX_SEND_BYTES = 64 * 1024 * 1024


class BackendServer:
    """A grpc.aio server together with its health status and the tasks that keep it current.

    It has the start / stop(grace) / wait_for_termination methods of grpc.aio.Server.
    """

    def __init__(
        self,
        server: aio.Server,
        *,
        health_servicer: Any,
        watchers: list[DependencyWatcher],
        background: dict[str, Callable[[], Coroutine[Any, Any, None]]],
    ) -> None:
        self.grpc_server = server
        self.health = health_servicer
        self._watchers = watchers
        self._background = background  # long-running jobs by name: the prediction log, drift checks
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.grpc_server.start()
        await self.health.set(OVERALL, SERVING)
        for watcher in self._watchers:
            for service in watcher.services:
                await self.health.set(service, NOT_SERVING)
        # One check before returning, so that a started server reports its real state.
        await asyncio.gather(*(watcher.check_once() for watcher in self._watchers))
        self._tasks = [asyncio.create_task(w.run(), name=f"health:{w.service}") for w in self._watchers]
        self._tasks += [asyncio.create_task(job(), name=name) for name, job in self._background.items()]

    async def stop(self, grace: float | None) -> None:
        """Report NOT_SERVING everywhere first, then let in-flight calls finish within grace seconds."""
        await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=CLOSE_STEP_S)
            for task in stuck:  # named, so a job that ignores cancellation is found, not waited for
                logger.warning(
                    "shutdown: the background job %r did not stop within %.0fs", task.get_name(), CLOSE_STEP_S
                )
        await self.grpc_server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (grpc's API)
        return await self.grpc_server.wait_for_termination(timeout)


def access_tokens(settings: Settings) -> TokenCodec:
    previous = settings.auth_token_previous_secret.get_secret_value()
    return TokenCodec(
        settings.auth_token_secret.get_secret_value().encode(),
        ttl_s=settings.auth_token_ttl_s,
        previous=previous.encode() if previous else None,
    )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate and key are configured, else None (plaintext)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
    )


@asynccontextmanager
async def open_mongo(settings: Settings) -> AsyncIterator[AsyncMongoClient[Document]]:
    """The one MongoDB client every repository shares, closed on exit; connected lazily."""
    timeout_ms = settings.mongodb_timeout_ms
    mongo: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        # The driver's own check of each server; a frozen or unreachable one is known down within
        # this plus connectTimeoutMS, and calls then fail fast (backend.mongo.MongoOperations).
        heartbeatFrequencyMS=settings.mongodb_heartbeat_ms,
        appname="fruitstack-backend",
    )
    try:
        yield mongo
    finally:
        await mongo.close()


def login_limits(mongo: AsyncMongoClient[Document], settings: Settings) -> LoginLimits:
    """The counters of failed sign-ins (also what the CLI's `unlock` clears)."""
    policy = LoginPolicy(
        free_attempts=settings.login_free_attempts,
        delay_s=settings.login_delay_s,
        delay_max_s=settings.login_delay_max_s,
        window_s=settings.login_window_s,
        address_max_attempts=settings.login_address_max_attempts,
        ipv6_prefix=settings.login_ipv6_prefix,
        trusted_proxies=tuple(settings.login_trusted_proxies),
    )
    return LoginLimits(
        mongo,
        database=settings.mongodb_database,
        timeout_s=settings.mongodb_timeout_ms / 1000,
        policy=policy,
    )


def open_accounts(mongo: AsyncMongoClient[Document], settings: Settings, tokens: TokenCodec) -> Accounts:
    """Users and logins on the shared client (also what the user-admin CLI works with)."""
    users = UserRepository(
        mongo, database=settings.mongodb_database, timeout_s=settings.mongodb_timeout_ms / 1000
    )
    password = settings.first_admin_password.get_secret_value()
    retrainer = settings.retrainer_password.get_secret_value()
    return Accounts(
        users,
        states=UserStates(users, cache_s=settings.auth_user_cache_s),
        tokens=tokens,
        passwords=Passwords(concurrency=settings.login_hash_concurrency, queue=settings.login_hash_queue),
        limits=login_limits(mongo, settings),
        first_admin=(settings.first_admin_username, password) if password else None,
        retrainer=(settings.retrainer_username, retrainer) if retrainer else None,
    )


@dataclass(frozen=True)
class Services:
    """What the gRPC services are built on (the repositories share one MongoDB client)."""

    fruits: FruitRepository
    accounts: Accounts
    tokens: TokenCodec
    predictor: Predictor
    monitoring: MonitoringRepository
    prediction_log: PredictionLog
    monitor: Monitor
    retrainer: Retrainer


@dataclass(frozen=True)
class Backend:
    """The server (built, not started) and the dependencies it was built from."""

    server: BackendServer
    port: int
    mongo: AsyncMongoClient[Document]
    services: Services


def create_server(settings: Settings, services: Services) -> tuple[BackendServer, int]:
    """Build (not start) the server with every service registered; returns it and its bound port."""
    # Order matters: the error mapping is outermost, so the policy's refusals become statuses too.
    limits = CallLimits.from_settings(settings)
    interceptors = [
        ErrorMappingInterceptor(limits),
        AuthInterceptor(
            policy=POLICY,
            tokens=services.tokens,
            users=services.accounts.states,
            allow_anonymous_reads=settings.allow_anonymous_reads,
        ),
    ]
    options = [
        # grpc's own limit is the largest method's, so that each method's smaller one answers first.
        ("grpc.max_receive_message_length", limits.largest_request_bytes),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
    ]
    server = aio.server(interceptors=interceptors, options=options)
    page_tokens = PageTokenCodec(settings.page_token_secret.get_secret_value().encode())
    fruits_pb2_grpc.add_FruitServiceServicer_to_server(FruitServicer(services.fruits, page_tokens), server)
    log = services.prediction_log if settings.prediction_log_enabled else None
    predictions_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(
            services.predictor,
            log=log,
            tokens=services.tokens,
            max_batch_rows=settings.predict_batch_max_rows,
            max_batch_s=settings.predict_batch_max_s,
        ),
        server,
    )
    monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server(
        MonitoringServicer(services.monitor, services.prediction_log), server
    )
    retraining_pb2_grpc.add_RetrainingServiceServicer_to_server(
        RetrainingServicer(services.retrainer), server
    )
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(services.accounts, services.tokens), server)

    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            fruits_pb2.DESCRIPTOR.services_by_name["FruitService"].full_name,
            predictions_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
            monitoring_pb2.DESCRIPTOR.services_by_name["MonitoringService"].full_name,
            retraining_pb2.DESCRIPTOR.services_by_name["RetrainingService"].full_name,
            auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    credentials = server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)

    async def mongo_ready() -> None:
        await services.fruits.check()
        await services.monitoring.prepare()

    watchers = [
        DependencyWatcher(
            service=FRUIT_SERVICE,
            also=(MONITORING_SERVICE,),
            probe=mongo_ready,
            health=health_servicer,
            interval_s=settings.mongodb_check_interval_s,
        ),
        DependencyWatcher(
            service=PREDICTION_SERVICE,
            probe=services.predictor.check_ready,
            health=health_servicer,
            interval_s=settings.model_check_interval_s,
        ),
        DependencyWatcher(
            service=AUTH_SERVICE,
            probe=services.accounts.check,
            health=health_servicer,
            interval_s=settings.mongodb_check_interval_s,
        ),
    ]
    background = {"prediction-log": services.prediction_log.run, "drift-checks": services.monitor.run}
    return BackendServer(
        server, health_servicer=health_servicer, watchers=watchers, background=background
    ), port


@asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[Backend]:
    """Every dependency of the backend and the server, closed in order on exit.

    Order of closing: the server (in-flight calls drain), the prediction log (what is queued is
    written), Prefect's and the model's clients, MongoDB. MongoDB is connected lazily, so the backend
    starts (and reports NOT_SERVING) while it is down.
    """
    async with open_mongo(settings) as mongo:
        model_client = ModelClient(settings.model_url, default_timeout=settings.model_timeout_s)
        prefect = PrefectApi(settings.prefect_api_url, timeout_s=settings.prefect_timeout_s)
        try:
            database, timeout_s = settings.mongodb_database, settings.mongodb_timeout_ms / 1000
            tokens = access_tokens(settings)
            accounts = open_accounts(mongo, settings, tokens)
            fruits = FruitRepository(mongo, database=database, timeout_s=timeout_s)
            monitoring = MonitoringRepository(
                mongo, database=database, timeout_s=timeout_s, retention_s=settings.prediction_log_retention_s
            )
            prediction_log = PredictionLog(
                monitoring,
                queue_size=settings.prediction_log_queue,
                bucket_rows=settings.drift_bucket_rows,
                bucket_s=settings.drift_bucket_s,
                write_timeout_s=timeout_s,
            )
            predictor = Predictor(model_client)
            retrainer = Retrainer(
                api=prefect,
                repository=RetrainingRepository(mongo, database=database, timeout_s=timeout_s),
                deployment=settings.retraining_deployment,
            )
            monitor = Monitor(
                repository=monitoring,
                log=prediction_log,
                predictor=predictor,
                window_predictions=settings.drift_window_predictions,
                alpha=settings.drift_alpha,
                check_interval_s=settings.drift_check_interval_s,
                report_cache_s=settings.drift_report_cache_s,
                max_window_predictions=settings.drift_max_window_predictions,
                max_window_s=settings.drift_max_window_s,
                on_drift_event=retrainer.on_drift_event if settings.retrain_on_drift else None,
            )
            services = Services(
                fruits=fruits,
                accounts=accounts,
                tokens=tokens,
                predictor=predictor,
                monitoring=monitoring,
                prediction_log=prediction_log,
                monitor=monitor,
                retrainer=retrainer,
            )
            server, port = create_server(settings, services)
            try:
                yield Backend(server=server, port=port, mongo=mongo, services=services)
            finally:
                await server.stop(0)  # a no-op when it was stopped (gracefully) already
                await close_within("write the prediction log's held pages", prediction_log.close())
                await close_within("finish the prediction batches in flight", predictor.close())
        finally:
            await close_within("close Prefect's client", prefect.close())
            await close_within("close the model service's client", model_client.close())


# Each step of closing is bounded: a process asked to stop must stop (an orchestrator kills it after
# its grace period anyway, losing the steps after the stuck one), so a step that outlasts this is
# abandoned with a warning naming it and the next one runs.
CLOSE_STEP_S = 15.0


async def close_within(step: str, closing: Coroutine[Any, Any, None]) -> None:
    try:
        async with asyncio.timeout(CLOSE_STEP_S):
            await closing
    except TimeoutError:
        logger.warning("shutdown: could not %s within %.0fs; going on without it", step, CLOSE_STEP_S)


async def serve(settings: Settings) -> None:
    """Run the backend until SIGTERM or SIGINT, then shut down gracefully."""
    async with open_backend(settings) as backend:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        await backend.server.start()
        logger.info(
            "backend listening on port %d (%s, MongoDB database %r)",
            backend.port,
            "TLS" if settings.tls else "plaintext",
            settings.mongodb_database,
        )
        await stop.wait()
        logger.info("shutting down: NOT_SERVING, draining calls for up to %.1fs", settings.shutdown_grace_s)
        await backend.server.stop(settings.shutdown_grace_s)
    logger.info("backend stopped")
