"""A circuit breaker for the model service: while it is known to be down, calls fail at once.

Without it every caller waits its whole deadline for a stalled model service, even though the health
probe has already said it is down. States:

- closed: calls go through.
- open: set by a failed readiness probe or a connection failure; calls raise Unavailable at once,
  saying why and since when.
- half-open: `retry_after_s` after opening, one call is let through as a trial (the others still
  fail fast); its success closes the breaker, its failure opens it again. A readiness probe that
  succeeds closes it too.

Only the service's own signals open it: a call that ran out of the *caller's* deadline says nothing
about the service (a client asking for 10 ms would otherwise open it for everyone).
Small on purpose: two attributes read per call on the prediction path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from backend.exceptions import Unavailable


class CircuitBreaker:
    def __init__(self, *, retry_after_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._open = False
        self._reason = ""
        self._since = ""
        self._trial_at = 0.0
        self._trial_running = False

    @property
    def is_open(self) -> bool:
        return self._open

    def before_call(self) -> bool:
        """Raise Unavailable while open; True when this call is the half-open trial."""
        if not self._open:
            return False
        if not self._trial_running and self._clock() >= self._trial_at:
            self._trial_running = True
            return True
        raise Unavailable(f"{self._reason} (since {self._since}); failing fast until it answers again")

    def succeeded(self) -> None:
        self._open = False
        self._trial_running = False

    def failed(self, reason: str) -> None:
        """The service itself is down (probe failed, no connection): open, or stay open.

        reason is a sentence naming the service and what failed; calls refused meanwhile quote it.
        """
        if not self._open:
            self._since = datetime.now(UTC).strftime("%H:%M:%S UTC")
        self._open = True
        self._reason = reason
        self._trial_running = False
        self._trial_at = self._clock() + self._retry_after_s

    def trial_ended(self) -> None:
        """A trial call ended with an error that says nothing about the service: let another try."""
        self._trial_running = False
