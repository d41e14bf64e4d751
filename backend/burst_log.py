"""A log line per burst: the first event of a burst as a warning, the rest only counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class BurstLog:
    """Logs the first of a burst of events as a warning, then only counts them for `quiet_s` seconds.

    One client sending garbage in a loop must not flood the log: the next warning after the quiet
    period says how many were left out.
    """

    def __init__(
        self, log: logging.Logger, *, quiet_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = log
        self._quiet_s = quiet_s
        self._clock = clock
        self._next_at = -float("inf")
        self._suppressed = 0

    def warning(self, message: str) -> None:
        now = self._clock()
        if now < self._next_at:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more like it since the last warning)" if self._suppressed else ""
        self._log.warning(
            "%s%s; further ones in the next %.0fs are counted, not logged", message, more, self._quiet_s
        )
        self._suppressed = 0
        self._next_at = now + self._quiet_s
