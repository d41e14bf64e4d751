"""The per-process cache of users' states, alone: a stand-in user store and a hand-moved clock."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from backend.auth.repository import UserRepository, UserState
from backend.auth.roles import Role
from backend.auth.user_states import UserStates
from backend.exceptions import Unavailable

VIEWER = UserState(role=Role.VIEWER, disabled=False, token_version=3)
DISABLED = UserState(role=Role.VIEWER, disabled=True, token_version=4)


class Store:
    """get_state as UserRepository has it; `state` is what MongoDB holds, `down` an outage."""

    def __init__(self) -> None:
        self.state: UserState | None = VIEWER
        self.reads = 0
        self.down = False
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()

    async def get_state(self, *, username: str, time_left: float | None = None) -> UserState | None:
        self.reads += 1
        self.reading.set()
        state = self.state
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise Unavailable("the user store is unavailable (MongoDB cannot be reached); retry later")
        return state


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def states(store: Store, clock: Clock, cache_s: float = 5.0) -> UserStates:
    return UserStates(cast(UserRepository, store), cache_s=cache_s, clock=clock)


async def test_a_state_is_read_once_per_cache_time() -> None:
    store, clock = Store(), Clock()
    cache = states(store, clock)
    assert await cache.current("ann") == VIEWER
    store.state = DISABLED  # changed by another replica
    clock.now += 4.9
    assert await cache.current("ann") == VIEWER  # within AUTH_USER_CACHE_S: the old state
    clock.now += 0.1
    assert await cache.current("ann") == DISABLED
    assert store.reads == 2


async def test_a_change_in_this_process_applies_at_once() -> None:
    store, clock = Store(), Clock()
    cache = states(store, clock)
    assert await cache.current("ann") == VIEWER
    store.state = DISABLED
    cache.forget("ann")
    assert await cache.current("ann") == DISABLED


async def test_a_read_that_began_before_a_change_is_not_kept() -> None:
    store, clock = Store(), Clock()
    cache = states(store, clock)
    store.gate = asyncio.Event()
    before = asyncio.ensure_future(cache.current("ann"))
    await store.reading.wait()  # the read has started, with the old state
    store.state = DISABLED
    cache.forget("ann")
    store.gate.set()
    assert await before == VIEWER  # that call began before the change
    assert await cache.current("ann") == DISABLED  # but nothing kept what it read


async def test_concurrent_calls_of_one_user_share_one_read() -> None:
    store, clock = Store(), Clock()
    cache = states(store, clock)
    store.gate = asyncio.Event()
    calls = [asyncio.ensure_future(cache.current("ann")) for _ in range(50)]
    await store.reading.wait()
    store.gate.set()
    assert await asyncio.gather(*calls) == [VIEWER] * 50
    assert store.reads == 1


async def test_no_such_user_is_remembered_too() -> None:
    store, clock = Store(), Clock()
    store.state = None
    cache = states(store, clock)
    assert await cache.current("ghost") is None
    assert await cache.current("ghost") is None
    assert store.reads == 1


async def test_during_an_outage_the_last_state_read_holds_and_an_unknown_user_is_refused() -> None:
    store, clock = Store(), Clock()
    cache = states(store, clock)
    assert await cache.current("ann") == VIEWER
    store.down = True
    clock.now += 60
    assert await cache.current("ann") == VIEWER
    with pytest.raises(
        Unavailable, match=r"cannot check the account of 'bob': the user store is unavailable"
    ):
        await cache.current("bob")


async def test_a_slow_refresh_does_not_hold_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("backend.auth.user_states.STALE_REFRESH_WAIT_S", 0.01)
    store, clock = Store(), Clock()
    cache = states(store, clock)
    assert await cache.current("ann") == VIEWER
    store.state, store.gate = DISABLED, asyncio.Event()  # a frozen MongoDB
    clock.now += 60
    assert await cache.current("ann") == VIEWER  # the old state, not a wait for MongoDB
    store.gate.set()  # MongoDB thaws: the refresh that went on behind lands
    await asyncio.sleep(0.01)
    assert await cache.current("ann") == DISABLED
    assert store.reads == 2
