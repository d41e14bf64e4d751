"""Failed sign-ins: delayed per (username, address), capped per address, never a lock-out.

The schedule and the address parsing are plain functions (unit tests); the counting runs against
real MongoDB (nx-27017) with an injected clock; the lock-out and flood tests against a real backend.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psutil
import pytest
from argon2 import PasswordHasher
from fruitstack.v1 import auth_pb2, auth_pb2_grpc
from grpc import aio
from pymongo import AsyncMongoClient

from backend.auth.accounts import Accounts
from backend.auth.login_limits import LOGIN_ATTEMPTS, LoginLimits, LoginPolicy, client_address, peer_ip
from backend.auth.passwords import Passwords
from backend.auth.repository import UserRepository
from backend.auth.roles import Role
from backend.exceptions import ResourceExhausted, Unauthenticated
from backend.mongo import Document
from tests.backend.auth.test_users import cli
from tests.fixtures.backend import (
    TEST_ADMIN,
    BackendProcess,
    backend_settings,
    running_backend,
    signing_tokens,
)

# ---- the schedule and the client's address (no MongoDB) ----


def test_the_delay_doubles_after_the_free_attempts_up_to_its_cap() -> None:
    policy = LoginPolicy(free_attempts=3, delay_s=1.0, delay_max_s=8.0)
    assert [policy.delay_before(guess) for guess in range(1, 10)] == [0, 0, 0, 1, 2, 4, 8, 8, 8]
    assert policy.delay_before(10_000) == 8.0


def test_the_filter_has_one_clause_per_step_until_the_cap() -> None:
    policy = LoginPolicy(free_attempts=3, delay_s=1.0, delay_max_s=8.0)
    assert policy.may_guess_filter(100.0) == [
        {"n": {"$lt": 3}},
        {"n": 3, "last": {"$lte": 99.0}},
        {"n": 4, "last": {"$lte": 98.0}},
        {"n": 5, "last": {"$lte": 96.0}},
        {"n": {"$gte": 6}, "last": {"$lte": 92.0}},
    ]


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5555", "127.0.0.1"),
        ("ipv6:[::1]:5555", "::1"),
        ("ipv6:%5B2001:db8::7%5D:5555", "2001:db8::7"),  # gRPC may percent-encode the brackets
        ("ipv6:[::ffff:192.0.2.9]:5555", "192.0.2.9"),  # IPv4 through a dual-stack socket
        ("unix:/tmp/socket", None),
        ("ipv4:not-an-address:1", None),
        ("", None),
    ],
)
def test_the_peer_address_is_the_ip_without_its_port(peer: str, expected: str | None) -> None:
    address = peer_ip(peer)
    assert (str(address) if address else None) == expected


def test_ipv6_clients_are_counted_per_prefix_and_others_share_one_key() -> None:
    policy = LoginPolicy(ipv6_prefix=64)
    assert client_address("ipv6:[2001:db8:1:2:aaaa::1]:1", forwarded_for=None, policy=policy) == (
        "2001:db8:1:2::/64"
    )
    assert client_address("ipv4:198.51.100.4:1", forwarded_for=None, policy=policy) == "198.51.100.4"
    assert client_address("unix:/x", forwarded_for=None, policy=policy) == "other"


def test_x_forwarded_for_counts_only_from_trusted_proxies() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    policy = LoginPolicy(trusted_proxies=proxies)
    proxy = "ipv4:10.1.2.3:443"
    # Not from a proxy: the header is the caller's word, ignored.
    assert client_address("ipv4:198.51.100.4:1", forwarded_for="1.2.3.4", policy=policy) == "198.51.100.4"
    # From the proxy: the rightmost address that is not a trusted proxy; what is left of it may be
    # made up by the client, so it is not read.
    assert client_address(proxy, forwarded_for="6.6.6.6, 203.0.113.8", policy=policy) == "203.0.113.8"
    assert client_address(proxy, forwarded_for="203.0.113.8, 10.9.9.9", policy=policy) == "203.0.113.8"
    # A malformed hop: stop at the last trusted proxy rather than guess.
    assert client_address(proxy, forwarded_for="junk", policy=policy) == "10.1.2.3"
    assert client_address(proxy, forwarded_for=None, policy=policy) == "10.1.2.3"


# ---- counting in real MongoDB, with a clock the test moves ----

START = 1_008_000.0  # the start of a window for each window_s below (they divide it)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def mongo(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    yield client
    await client.close()


def accounts_with(
    mongo: AsyncMongoClient[Document], database: str, policy: LoginPolicy, clock: Clock
) -> tuple[Accounts, LoginLimits]:
    limits = LoginLimits(mongo, database=database, timeout_s=5, policy=policy, clock=clock)
    accounts = Accounts(
        UserRepository(mongo, database=database, timeout_s=5),
        tokens=signing_tokens(),
        # Cheap argon2 parameters: these tests are about counting, and make dozens of checks.
        passwords=Passwords(concurrency=2, queue=64, hasher=PasswordHasher(time_cost=1, memory_cost=1024)),
        limits=limits,
    )
    return accounts, limits


ATTACKER = "ipv4:192.0.2.66:40000"
OFFICE = "ipv4:198.51.100.7:50000"


async def test_each_further_failure_waits_longer_and_other_addresses_never_wait(
    mongo: AsyncMongoClient[Document], mongodb_database: str
) -> None:
    clock = Clock()
    policy = LoginPolicy(free_attempts=2, delay_s=10, delay_max_s=40, window_s=1000)
    accounts, _ = accounts_with(mongo, mongodb_database, policy, clock)
    await accounts.create_user(username="pat", password="pat-password-1", role=Role.VIEWER)

    async def guess(peer: str = ATTACKER, password: str = "nope") -> str:
        try:
            await accounts.login(username="pat", password=password, peer=peer)
        except Unauthenticated:
            return "wrong"
        except ResourceExhausted as exc:
            return exc.message
        return "signed in"

    delayed = "too many failed sign-ins for 'pat' from your address; try again in {} s"
    assert [await guess(), await guess()] == ["wrong", "wrong"]
    # 10, 20, 40, then 40 again (the cap): the pair waits, it is never locked.
    for wait in (10, 20, 40, 40):
        assert await guess() == delayed.format(wait)
        # The right password waits too: otherwise the delay would tell when a guess is right.
        assert await guess(password="pat-password-1") == delayed.format(wait)
        clock.now += wait - 1
        assert await guess() == delayed.format(1)
        # Meanwhile the user signs in from their own address.
        assert await guess(peer=OFFICE, password="pat-password-1") == "signed in"
        clock.now += 1
        assert await guess() == "wrong"
    # A new window starts the count over...
    clock.now = START + 1000
    assert [await guess(), await guess(), await guess()] == ["wrong", "wrong", delayed.format(10)]
    # ... and so does a right password (from the pair, once its delay is over).
    clock.now += 10
    assert await guess(password="pat-password-1") == "signed in"
    assert [await guess(), await guess(), await guess()] == ["wrong", "wrong", delayed.format(10)]


async def test_one_address_failing_across_usernames_is_capped(
    mongo: AsyncMongoClient[Document], mongodb_database: str
) -> None:
    clock = Clock()
    policy = LoginPolicy(free_attempts=5, address_max_attempts=3, window_s=500)
    accounts, _ = accounts_with(mongo, mongodb_database, policy, clock)
    await accounts.create_user(username="vera", password="vera-password-1", role=Role.VIEWER)
    # A success gives its attempt back: signing in with a valid account buys no extra guesses.
    await accounts.login(username="vera", password="vera-password-1", peer=ATTACKER)
    for name in ("ann", "bob", "cy"):
        with pytest.raises(Unauthenticated):
            await accounts.login(username=name, password="spray-password", peer=ATTACKER)
    with pytest.raises(ResourceExhausted) as refused:
        await accounts.login(username="vera", password="vera-password-1", peer=ATTACKER)
    assert refused.value.message == "too many failed sign-ins from your address; try again in 500 s"
    # Other addresses are not affected; the next window lets the address in again.
    await accounts.login(username="vera", password="vera-password-1", peer=OFFICE)
    clock.now += 500
    await accounts.login(username="vera", password="vera-password-1", peer=ATTACKER)


async def test_a_burst_at_the_window_boundary_gets_only_the_allowed_guesses(
    mongo: AsyncMongoClient[Document], mongodb_database: str
) -> None:
    clock = Clock()
    policy = LoginPolicy(free_attempts=3, delay_s=100, delay_max_s=100, window_s=60)
    accounts, _ = accounts_with(mongo, mongodb_database, policy, clock)

    async def burst(size: int) -> int:
        """How many of `size` parallel guesses reached the password check."""

        async def one() -> bool:
            try:
                await accounts.login(username="admin", password="a-guess", peer=ATTACKER)
            except Unauthenticated:
                return True
            except ResourceExhausted:
                return False
            raise AssertionError("a guess signed in")

        return sum(await asyncio.gather(*(one() for _ in range(size))))

    clock.now = START + 59  # the last second of a window
    assert await burst(20) == 3
    clock.now = START + 59.999
    assert await burst(20) == 0
    # The new window is a new document: however many race at its start, 3 are counted in.
    clock.now = START + 60
    assert await burst(20) == 3


async def test_attempt_records_expire_with_their_window(
    mongo: AsyncMongoClient[Document], mongodb_database: str
) -> None:
    clock = Clock()
    accounts, limits = accounts_with(mongo, mongodb_database, LoginPolicy(window_s=300), clock)
    collection = mongo[mongodb_database][LOGIN_ATTEMPTS]
    # A counter of the earlier per-username limit, which had no expiry.
    await collection.insert_one({"_id": "admin", "attempts": 3, "since": 1.0})
    await limits.prepare()
    ttl = [
        index
        for index in (await collection.index_information()).values()
        if index["key"] == [("expires_at", 1)]
    ]
    assert [index.get("expireAfterSeconds") for index in ttl] == [0]
    assert await collection.find_one({"_id": "admin"}) is None

    # A window that ends in an hour or so: its records carry that end.
    clock.now = (math.floor(time.time() / 300) + 12) * 300
    with pytest.raises(Unauthenticated):
        await accounts.login(username="admin", password="nope", peer=ATTACKER)
    records = await collection.find({}).to_list()
    assert len(records) == 2  # the pair's and the address's
    assert {record["expires_at"].timestamp() for record in records} == {clock.now + 300}
    # A window long over: its records go (nx-27017 purges on the next read; MongoDB's TTL monitor
    # within a minute or so).
    clock.now = START
    with pytest.raises(Unauthenticated):
        await accounts.login(username="admin", password="nope", peer=OFFICE)
    deadline = time.monotonic() + 120
    while await collection.count_documents({"expires_at": {"$lt": datetime.now(UTC)}}):
        assert time.monotonic() < deadline, "the TTL index removed no expired record in 120 s"
        await asyncio.sleep(0.5)
    assert await collection.count_documents({}) == 2


# ---- a real backend ----


async def login(channel: aio.Channel, password: str, username: str = "admin") -> aio.AioRpcError | None:
    try:
        await auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username=username, password=password), timeout=30
        )
    except aio.AioRpcError as exc:
        return exc
    return None


async def test_fifty_failures_from_one_address_never_lock_the_admin_out(
    mongodb_uri: str, mongodb_database: str
) -> None:
    # Bound to every address, so that the client can come from 127.0.0.1 and from ::1.
    settings = backend_settings(
        mongodb_uri=mongodb_uri,
        mongodb_database=mongodb_database,
        grpc_host="[::]",
        login_free_attempts=3,
        login_delay_s=30.0,  # long enough that no delay ends during the test
        login_delay_max_s=60.0,
    )
    async with (
        running_backend(settings) as backend,
        aio.insecure_channel(f"127.0.0.1:{backend.port}") as ipv4,
        aio.insecure_channel(f"[::1]:{backend.port}") as ipv6,
    ):
        answers = [await login(ipv4, f"guess-{n}") for n in range(50)]
        codes = [answer.code() if answer else None for answer in answers]
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 47
        last = answers[-1]
        assert last is not None
        assert re.fullmatch(
            r"too many failed sign-ins for 'admin' from your address; try again in \d+ s",
            last.details() or "",
        )
        # The right password from another address: in at once.
        assert await login(ipv6, TEST_ADMIN[1]) is None
        # From the address that failed it waits like a guess...
        delayed = await login(ipv4, TEST_ADMIN[1])
        assert delayed is not None
        assert delayed.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # ... until an admin clears its failures with the CLI.
        assert await cli("unlock", " Admin", mongodb_uri=mongodb_uri, database=mongodb_database) == (
            0,
            "cleared 1 failed sign-in record(s) of admin\n",
        )
        assert await login(ipv4, TEST_ADMIN[1]) is None


async def test_a_flood_of_logins_is_refused_past_the_queue_in_bounded_memory(
    mongodb_uri: str, mongodb_database: str, tmp_path: Path
) -> None:
    backend = BackendProcess(
        mongodb_uri=mongodb_uri,
        mongodb_database=mongodb_database,
        log_dir=tmp_path,
        more_env={
            "LOGIN_HASH_CONCURRENCY": "2",
            "LOGIN_HASH_QUEUE": "8",
            # The flood comes from one address: let the queue, not the address cap, refuse it.
            "LOGIN_ADDRESS_MAX_ATTEMPTS": "100000",
        },
    ).start()
    try:
        assert backend.process.proc is not None
        process = psutil.Process(backend.process.proc.pid)
        async with aio.insecure_channel(backend.target) as channel:
            assert await login(channel, TEST_ADMIN[1]) is None  # warm: the first hash, the first write
            rss_before = process.memory_info().rss
            names = [f"u{uuid.uuid4().hex[:16]}" for _ in range(5000)]
            answers = await asyncio.gather(*(login(channel, "a-guess", name) for name in names))
            rss_after = process.memory_info().rss
            codes = [answer.code() if answer else None for answer in answers]
            busy = [a for a in answers if a is not None and a.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
            checked, cancelled = (
                codes.count(grpc.StatusCode.UNAUTHENTICATED),
                codes.count(grpc.StatusCode.CANCELLED),
            )
            mib = f"{rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB"
            print(
                f"5,000 logins: {checked} checked, {len(busy)} RESOURCE_EXHAUSTED,"
                f" {cancelled} CANCELLED; RSS {mib}"
            )
            # CANCELLED: calls gRPC itself shed before they reached the servicer (gRPC core refuses
            # calls beyond its own limit of pending requests), which is also a bounded answer.
            assert set(codes) <= {
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.CANCELLED,
            }
            assert len(busy) > 0
            assert {a.details() for a in busy} == {
                "the server is busy checking other sign-ins; try again in a few seconds"
            }
            # Two argon2 hashes (64 MiB each) and the calls in flight; an unbounded queue held all
            # 5,000 calls and their documents.
            assert rss_after - rss_before < 256 * 2**20
            # Still up, and the admin still signs in.
            assert await login(channel, TEST_ADMIN[1]) is None
    finally:
        backend.process.stop()
