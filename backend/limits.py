"""What one call may make the server hold: each method's largest request, and calls at once.

ErrorMappingInterceptor enforces them before any handler (or the policy, or a password hash) runs.
The numbers are settings (backend.config); which method gets which is decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.config import Settings

PREDICT = "/fruitstack.v1.PredictionService/Predict"
PREDICT_BATCH = "/fruitstack.v1.PredictionService/PredictBatch"
# Not counted against the concurrency cap: a health probe must see the truth about a busy server
# (a refused probe gets the container restarted, which makes a busy server worse), and the health
# service's Watch streams live as long as their clients.
UNCOUNTED = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


@dataclass(frozen=True)
class CallLimits:
    """Request size limits per method (full gRPC name) and the cap on calls in flight."""

    default_request_bytes: int
    request_bytes: Mapping[str, int] = field(default_factory=dict)
    max_concurrent_calls: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CallLimits:
        return cls(
            # Every other method carries a few names, an id or a page token: a few KiB at most.
            default_request_bytes=settings.max_request_bytes,
            request_bytes={
                # One row: a float per feature, keyed by the feature's name.
                PREDICT: settings.max_predict_request_bytes,
                # The one method that carries many rows, in chunks of 10k-100k.
                PREDICT_BATCH: settings.max_batch_request_bytes,
            },
            max_concurrent_calls=settings.max_concurrent_calls,
        )

    def request_bytes_for(self, method: str) -> int:
        return self.request_bytes.get(method, self.default_request_bytes)

    @property
    def largest_request_bytes(self) -> int:
        """What grpc itself must accept, so that every method's own limit is the one that answers."""
        return max([self.default_request_bytes, *self.request_bytes.values()])

    def counts(self, method: str) -> bool:
        return self.max_concurrent_calls is not None and method not in UNCOUNTED
