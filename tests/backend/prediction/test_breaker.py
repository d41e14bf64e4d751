"""The circuit breaker's states with a fake clock (the integration is in test_outages.py)."""

from __future__ import annotations

import pytest

from backend.exceptions import Unavailable
from backend.prediction.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_closed_lets_calls_through() -> None:
    breaker = CircuitBreaker(clock=Clock())
    assert breaker.before_call() is False
    assert not breaker.is_open


def test_open_fails_fast_with_the_reason_until_the_trial_time() -> None:
    clock = Clock()
    breaker = CircuitBreaker(retry_after_s=2.0, clock=clock)
    breaker.failed("the model service at x did not answer /readyz within 2s")
    for _ in range(3):
        with pytest.raises(Unavailable, match=r"did not answer /readyz within 2s \(since .*\); failing fast"):
            breaker.before_call()
    clock.now += 2.0
    assert breaker.before_call() is True  # the half-open trial
    with pytest.raises(Unavailable):  # only one trial at a time
        breaker.before_call()


def test_a_successful_trial_closes_and_a_failed_one_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(retry_after_s=2.0, clock=clock)
    breaker.failed("down")
    clock.now += 2.0
    assert breaker.before_call() is True
    breaker.failed("still down")
    with pytest.raises(Unavailable, match="still down"):
        breaker.before_call()
    clock.now += 2.0
    assert breaker.before_call() is True
    breaker.succeeded()
    assert not breaker.is_open
    assert breaker.before_call() is False


def test_a_trial_that_ends_without_news_lets_another_try() -> None:
    clock = Clock()
    breaker = CircuitBreaker(retry_after_s=2.0, clock=clock)
    breaker.failed("down")
    clock.now += 2.0
    assert breaker.before_call() is True
    breaker.trial_ended()  # e.g. the caller's own deadline ran out
    assert breaker.before_call() is True


def test_a_successful_probe_closes_it_at_once() -> None:
    breaker = CircuitBreaker(clock=Clock())
    breaker.failed("down")
    breaker.succeeded()
    assert breaker.before_call() is False
