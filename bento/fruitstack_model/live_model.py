"""The model version a worker serves now, and how every worker of a store follows a reload.

`bentoml serve --workers N` runs N processes that share nothing but the file system. A reload
handled by one worker therefore writes the chosen version into a small marker file; every worker
`stat`s that file before each request (about a microsecond) and, when it changed, loads the named
version before answering. Requests are served from a single reference that is replaced only after
the new model is fully loaded and verified, so no request ever sees a half-loaded model, and each
response names the version that computed it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from fruitstack_model.model_store import LoadedModel, latest_stored, load_verified, stored_version

# Under `bentoml serve` only the "bentoml" logger tree is configured to print; log inside it.
logger = logging.getLogger("bentoml").getChild(__name__)

Stamp = tuple[int, int, int] | None


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


class LiveModel:
    """Holds the current LoadedModel of this worker and swaps it on reload."""

    def __init__(self, initial: LoadedModel, *, marker: VersionMarker) -> None:
        self._model = initial
        self._marker = marker
        # A (re)started worker serves the newest model; telling the others keeps them all equal.
        if marker.read() != initial.version:
            marker.write(initial.version)
        self._seen: Stamp = marker.stamp()
        self._lock = asyncio.Lock()

    @property
    def model(self) -> LoadedModel:
        """The model as of the last check; use `current()` on request paths."""
        return self._model

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
                    self._model = await asyncio.to_thread(lambda: load_verified(stored_version(version)))
                    logger.info("now serving %s (reloaded by another worker)", version)
                except Exception:
                    # Keep answering with the verified model we have: a request must not fail
                    # because a reload elsewhere went wrong. Logged, and retried on the next change.
                    logger.exception(
                        "cannot follow the reload to %s; still serving %s", version, self._model.version
                    )
            self._seen = stamp

    async def reload(self) -> tuple[str, str]:
        """Load the newest registered version (if it is not the one served) and tell every worker.

        Returns (previous, current) versions. Raises ModelNotFound / ModelIntegrityError and keeps
        serving the previous model when the newest one cannot be loaded.
        """
        async with self._lock:
            previous = self._model.version
            stored = latest_stored()
            if str(stored.tag.version) != previous:
                self._model = await asyncio.to_thread(load_verified, stored)
                logger.info("reloaded: now serving %s (was %s)", self._model.version, previous)
            self._marker.write(self._model.version)
            self._seen = self._marker.stamp()
            return previous, self._model.version
