"""The model version a worker serves now: the registry's champion, followed without a failed request.

Requests are served from a single reference that is replaced only after the new version is fully
downloaded, hash-checked and unpickled, so no request ever sees a half-loaded model, and each
response names the version that computed it. Three things move that reference:

- `/reload` (one worker): loads the champion, or makes a given version champion (a rollback);
- the marker file: `bentoml serve --workers N` runs N processes that share nothing but the file
  system, so the worker that reloaded writes the version into a small file that every worker
  `stat`s before each request (about a microsecond) and follows before answering;
- polling: every `poll_interval_s` each worker looks the champion alias up (in a thread, ~10 ms)
  and follows a promotion made by train.py or anyone else, without being told.

When the registry does not answer, the worker keeps serving what it holds and says so in
`status`; at start-up it falls back to the last version in its local cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from fruitstack_model.exceptions import ModelIntegrityError, ModelNotFound, RegistryUnavailable
from fruitstack_model.gate import record_manual
from fruitstack_model.model_store import LoadedModel, ModelCache, load_fetched, load_verified, require_version
from fruitstack_model.registry import CHAMPION, FetchedModel, Registry, VersionRecord

# Under `bentoml serve` only the "bentoml" logger tree is configured to print; log inside it.
logger = logging.getLogger("bentoml").getChild(__name__)

Stamp = tuple[int, int, int] | None
T = TypeVar("T")


class VersionMarker:
    """A file naming the version the workers should serve; replaced atomically on every write."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def stamp(self) -> Stamp:
        """Cheap change detector: (inode, size, mtime_ns); a rename always gives a new inode."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def read(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def write(self, version: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(version)
        os.replace(tmp, self.path)


class ModelSource:
    """Versions of one registered model: from the registry, through the local BentoML cache."""

    def __init__(self, registry: Registry, cache: ModelCache | None = None) -> None:
        self.registry = registry
        self.cache = cache or ModelCache()

    def champion(self) -> VersionRecord:
        champion = self.registry.champion()
        if champion is None:
            raise ModelNotFound(
                f"'{self.registry.name}' has no champion in the MLflow registry at "
                f"{self.registry.tracking_uri}; register one with `nox -s train`"
            )
        return champion

    def load(self, version: str) -> LoadedModel:
        """A version, verified against the sha256 the registry recorded (cache used when it agrees)."""
        record = self.registry.get(version)
        cached = self.cache.get(record.name, version)
        if cached is not None:
            try:
                return load_fetched(FetchedModel(record=record, artifact=cached.artifact, info=cached.info))
            except ModelIntegrityError:
                logger.warning(
                    "cached %s:%s differs from the registry; downloading it again", record.name, version
                )
                self.cache.drop(record.name, version)
        fetched = self.registry.fetch(version)
        model = load_fetched(fetched)  # verified before it is cached
        try:
            self.cache.put(fetched)
        except Exception:
            # The cache only helps a restart while the registry is down; a verified model is
            # served whether or not it could be kept.
            logger.exception("cannot keep %s:%s in the local BentoML store", record.name, version)
        return model

    def load_cached(self, version: str | None) -> LoadedModel:
        """Without the registry: a cached version (or the newest cached), checked against the sha256
        recorded at registration, which the cache kept."""
        name = self.registry.name
        version = version or self.cache.latest(name)
        cached = self.cache.get(name, version) if version else None
        if cached is None:
            raise ModelNotFound(f"no cached version {version or ''} of '{name}' in the local BentoML store")
        record = cached.record
        return load_verified(
            name=name,
            version=record.version,
            run_id=record.run_id,
            artifact=cached.artifact,
            metadata=cached.info,
            sha256=record.sha256,
        )


@dataclass(frozen=True)
class RegistryStatus:
    """What this worker last learned from the registry."""

    tracking_uri: str
    reachable: bool | None = None  # None: not asked yet
    error: str | None = None
    checked_at: str | None = None
    champion: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "tracking_uri": self.tracking_uri,
            "reachable": self.reachable,
            "error": self.error,
            "checked_at": self.checked_at,
            "champion": self.champion,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LiveModel:
    """Holds the current LoadedModel of this worker and swaps it on reload, marker change or promotion."""

    def __init__(
        self,
        initial: LoadedModel,
        *,
        source: ModelSource,
        marker: VersionMarker,
        aliases: tuple[str, ...] = (),
        status: RegistryStatus | None = None,
    ) -> None:
        self._model = initial
        self._aliases = aliases
        self._source = source
        self._marker = marker
        self.status = status or RegistryStatus(source.registry.tracking_uri)
        # A (re)started worker serves the champion; telling the others keeps them all equal.
        if marker.read() != initial.version:
            marker.write(initial.version)
        self._seen: Stamp = marker.stamp()
        self._lock = asyncio.Lock()
        self._refused: str | None = None  # a champion that failed to load; not retried every poll

    @classmethod
    def start(cls, source: ModelSource, *, marker: VersionMarker) -> LiveModel:
        """The champion; or, when the registry does not answer, the version the workers served last."""
        status = RegistryStatus(source.registry.tracking_uri)
        try:
            champion = source.champion()
            model = source.load(champion.version)
        except RegistryUnavailable as exc:
            try:
                model = source.load_cached(marker.read())
            except ModelNotFound:
                raise RegistryUnavailable(
                    f"{exc}; and no version is cached locally to serve meanwhile"
                ) from exc
            logger.warning("registry unreachable at start; serving cached version %s: %s", model.version, exc)
            return cls(
                model, source=source, marker=marker, status=replace(status, reachable=False, error=str(exc))
            )
        logger.info("serving %s version %s (champion)", model.name, model.version)
        status = replace(status, reachable=True, checked_at=_now(), champion=champion.version)
        return cls(model, source=source, marker=marker, aliases=champion.aliases, status=status)

    @property
    def model(self) -> LoadedModel:
        """The model as of the last check; use `current()` on request paths."""
        return self._model

    @property
    def aliases(self) -> tuple[str, ...]:
        return self._aliases

    async def current(self) -> LoadedModel:
        """The model to answer this request with, following a reload made by another worker."""
        if self._marker.stamp() != self._seen:
            await self._follow_marker()
        return self._model

    async def _follow_marker(self) -> None:
        async with self._lock:
            stamp = self._marker.stamp()
            if stamp == self._seen:  # another request of this worker followed it meanwhile
                return
            version = self._marker.read()
            if version is not None and version != self._model.version:
                try:
                    self._model = await asyncio.to_thread(self._load_any, version)
                    self._aliases = ()
                    logger.info("now serving %s (reloaded by another worker)", version)
                except Exception:
                    # Keep answering with the verified model we have: a request must not fail
                    # because a reload elsewhere went wrong. Logged, and retried on the next change.
                    logger.exception(
                        "cannot follow the reload to %s; still serving %s", version, self._model.version
                    )
            self._seen = stamp

    def _load_any(self, version: str) -> LoadedModel:
        try:
            return self._source.load(version)
        except RegistryUnavailable:
            return self._source.load_cached(version)

    def _registry_answered(self, champion: VersionRecord | None) -> None:
        self.status = replace(
            self.status,
            reachable=True,
            error=None,
            checked_at=_now(),
            champion=champion.version if champion else None,
        )

    def _registry_failed(self, exc: RegistryUnavailable) -> None:
        self.status = replace(self.status, reachable=False, error=str(exc), checked_at=_now())

    async def _registry(self, call: Callable[[], T]) -> T:
        """Run a blocking registry call in a thread, keeping `status` current on failure."""
        try:
            return await asyncio.to_thread(call)
        except RegistryUnavailable as exc:
            self._registry_failed(exc)
            raise

    async def reload(self, version: str | None = None, *, by: str = "") -> tuple[str, str]:
        """Serve the champion (version empty), or make `version` the champion, pinned, and serve it.

        A named version is a person's decision (`by`, for the record): it pins the champion, so that
        the gate promotes nothing over it until an admin unpins (gate.record_manual).

        Returns (previous, current) served versions, and tells every worker. A rollback loads and
        verifies the version before moving the alias, so a broken version never becomes champion.
        Raises InvalidInput, ModelNotFound, ModelIntegrityError or RegistryUnavailable and keeps
        serving the previous model.
        """
        async with self._lock:
            previous = self._model.version
            source = self._source
            if version:
                wanted = require_version(version)
                model = (
                    self._model if wanted == previous else await self._registry(lambda: source.load(wanted))
                )
                champion = await self._registry(source.registry.champion)
                await self._registry(
                    lambda: record_manual(
                        source.registry,
                        wanted,
                        previous=champion.version if champion else None,
                        how="a rollback",
                        by=by,
                    )
                )
                record = await self._registry(lambda: source.registry.get(wanted))
            else:
                record = await self._registry(source.champion)
                model = (
                    self._model
                    if record.version == previous
                    else await self._registry(lambda: source.load(record.version))
                )
            self._model, self._aliases = model, record.aliases
            self._refused = None
            self._registry_answered(record if CHAMPION in record.aliases else None)
            if model.version != previous:
                logger.info("reloaded: now serving %s (was %s)", model.version, previous)
            self._marker.write(model.version)
            self._seen = self._marker.stamp()
            return previous, model.version

    async def check_champion(self) -> None:
        """One look at the champion alias; follow it when it moved. Never raises (logged instead)."""
        source = self._source
        try:
            champion = await self._registry(source.registry.champion)
        except RegistryUnavailable:
            return
        except Exception:
            logger.exception("looking up the champion failed")
            return
        self._registry_answered(champion)
        if champion is None:
            return
        if champion.version == self._model.version:
            self._aliases = champion.aliases
            return
        if champion.version == self._refused:
            return
        async with self._lock:
            if champion.version == self._model.version:  # a /reload got there first
                return
            try:
                model = await self._registry(lambda: source.load(champion.version))
            except Exception as exc:
                # A verdict on the version itself would only repeat every poll; anything else (a
                # timeout, a full disk) may pass, so the next poll tries again.
                if isinstance(exc, ModelIntegrityError | ModelNotFound):
                    self._refused = champion.version
                logger.exception(
                    "cannot serve the new champion %s; still serving %s",
                    champion.version,
                    self._model.version,
                )
                return
            previous = self._model.version
            self._model, self._aliases = model, champion.aliases
            logger.info("following the champion alias: now serving %s (was %s)", model.version, previous)

    async def poll(self, interval_s: float) -> None:
        """check_champion every interval_s seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.check_champion()
