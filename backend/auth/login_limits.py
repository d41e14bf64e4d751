"""Failed sign-ins: a progressive delay per (username, client address), a cap per client address.

Neither ever locks an account: a username that fails from one address can still sign in from any
other address (the admin included), and a delayed pair is only ever made to wait LOGIN_DELAY_MAX_S
at most. Every attempt is counted in MongoDB (`login_attempts`) with ONE atomic conditional update
BEFORE its password is checked, so parallel guesses cannot slip past the count:

- a pair's document is keyed by (window, address, username): a new window is a new document, so
  there is no read-then-reset to race on, and a TTL index on `expires_at` removes it when its
  window ends;
- the update matches only when the pair may guess now (fewer than LOGIN_FREE_ATTEMPTS guesses in
  this window, or the last one was long enough ago); otherwise the upsert's insert collides with
  the existing document (a duplicate key) and the attempt is refused.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from backend.burst_log import BurstLog
from backend.exceptions import ResourceExhausted
from backend.mongo import Document, MongoOperations

logger = logging.getLogger(__name__)

LOGIN_ATTEMPTS = "login_attempts"
# The address of a caller in this process (tests, tools) that has no gRPC peer.
LOCAL_CLIENT = "local"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """The numbers of the limit (backend.config's LOGIN_* settings)."""

    free_attempts: int = 5
    delay_s: float = 2.0
    delay_max_s: float = 120.0
    window_s: float = 900.0
    address_max_attempts: int = 100
    ipv6_prefix: int = 64
    trusted_proxies: tuple[Network, ...] = field(default_factory=tuple)

    def delay_before(self, guess: int) -> float:
        """Seconds the `guess`-th guess of a pair in one window must wait after the one before it.

        The first free_attempts wait nothing; then delay_s, doubling with each further guess, up to
        delay_max_s.
        """
        beyond = guess - self.free_attempts
        if beyond <= 0:
            return 0.0
        # min() first keeps 2**beyond from growing without bound for a long-running attacker.
        return min(self.delay_max_s, self.delay_s * 2.0 ** min(beyond - 1, 64))

    def may_guess_filter(self, now: float) -> list[Document]:
        """A MongoDB $or that matches a pair's document when its next guess is allowed at `now`.

        One clause per step of the schedule until the delay reaches its cap, then one for the rest
        (at most about log2(delay_max_s / delay_s) + 2 clauses).
        """
        clauses: list[Document] = [{"n": {"$lt": self.free_attempts}}]
        made = self.free_attempts  # guesses already made; the next one is made + 1
        while (delay := self.delay_before(made + 1)) < self.delay_max_s:
            clauses.append({"n": made, "last": {"$lte": now - delay}})
            made += 1
        clauses.append({"n": {"$gte": made}, "last": {"$lte": now - self.delay_max_s}})
        return clauses

    def window(self, now: float) -> tuple[int, float]:
        """The window `now` falls in: its number and the time it ends."""
        number = math.floor(now / self.window_s)
        return number, (number + 1) * self.window_s


def _parse_ip(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket sees IPv4 clients as ::ffff:a.b.c.d: the same client either way.
        return address.ipv4_mapped
    return address


def peer_ip(peer: str) -> Address | None:
    """The IP address of a gRPC peer ("ipv4:1.2.3.4:5555", "ipv6:[::1]:5555"), port stripped."""
    kind, _, rest = unquote(peer).partition(":")  # gRPC may percent-encode the brackets
    if kind == "ipv4":
        return _parse_ip(rest.rpartition(":")[0])
    if kind == "ipv6":
        return _parse_ip(rest.rpartition("]")[0].lstrip("["))
    return None


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(peer: str, *, forwarded_for: str | None, policy: LoginPolicy) -> str:
    """The key a caller's attempts are counted under: its address (an IPv6 one as its prefix).

    X-Forwarded-For is believed only from a configured trusted proxy, and only as far as the hops
    it lists are trusted proxies too: read from the right, the first address that is not one is the
    client (anything left of it was written by the client and may be made up).
    """
    address = peer_ip(peer)
    if address is None:
        # A Unix socket or the in-process caller: one bucket for all of them.
        return LOCAL_CLIENT if peer == LOCAL_CLIENT else "other"
    if forwarded_for and _trusted(address, policy.trusted_proxies):
        for hop in reversed(forwarded_for.split(",")):
            hop_address = _parse_ip(hop)
            if hop_address is None:
                break  # a malformed hop: stop at the last proxy we trust
            address = hop_address
            if not _trusted(address, policy.trusted_proxies):
                break
    if isinstance(address, ipaddress.IPv6Address):
        # One subscriber usually gets a whole /64: counting single addresses would let them
        # rotate through 2**64 of them.
        return str(ipaddress.IPv6Network((address, policy.ipv6_prefix), strict=False))
    return str(address)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One counted attempt, to be settled after the password check."""

    pair_id: str
    address_id: str


class LoginLimits:
    """Counts sign-in attempts in MongoDB and refuses those over the limit (ResourceExhausted)."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        *,
        database: str,
        timeout_s: float,
        policy: LoginPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._attempts: AsyncCollection[Document] = client[database][LOGIN_ATTEMPTS]
        self._mongo = MongoOperations(client, store="sign-in counter", timeout_s=timeout_s)
        self.policy = policy
        self._clock = clock
        self._prepared = False
        self._refusals = BurstLog(logger)

    async def prepare(self, *, time_left: float | None = None) -> None:
        """The TTL and unlock indexes (idempotent; once per process, when MongoDB answers)."""
        if self._prepared:
            return
        async with self._mongo.bounded("create the sign-in counter's indexes", time_left):
            await self._attempts.create_index("expires_at", name="expires_at_ttl", expireAfterSeconds=0)
            await self._attempts.create_index("username", name="username")
            # Counters of the earlier per-username limit had no expiry: they would stay forever.
            await self._attempts.delete_many({"expires_at": {"$exists": False}})
        self._prepared = True

    def client(self, peer: str, forwarded_for: str | None = None) -> str:
        return client_address(peer, forwarded_for=forwarded_for, policy=self.policy)

    async def count(self, *, username: str, client: str, time_left: float | None = None) -> Attempt:
        """Count one attempt of (username, client) before its password is checked, or refuse it."""
        now = self._clock()
        window, ends = self.policy.window(now)
        expires_at = datetime.fromtimestamp(ends, UTC)
        attempt = Attempt(
            pair_id=f"pair:{window}:{client}:{username}", address_id=f"address:{window}:{client}"
        )
        once = {"username": username, "expires_at": expires_at}
        pair = await self._take(
            attempt.pair_id,
            {"$or": self.policy.may_guess_filter(now)},
            {"$inc": {"n": 1}, "$set": {"last": now}, "$setOnInsert": once},
            time_left,
        )
        if not pair:
            wait_s = await self._pair_wait(attempt.pair_id, now=now, window_ends=ends, time_left=time_left)
            self._refusals.warning(f"sign-in for {username!r} from {client} delayed ({wait_s} s)")
            raise ResourceExhausted(
                f"too many failed sign-ins for {username!r} from your address; try again in {wait_s} s"
            )
        address = await self._take(
            attempt.address_id,
            {"n": {"$lt": self.policy.address_max_attempts}},
            {"$inc": {"n": 1}, "$setOnInsert": {"expires_at": expires_at}},
            time_left,
        )
        if not address:
            wait_s = max(1, math.ceil(ends - now))
            self._refusals.warning(f"sign-ins from {client} refused until its window ends ({wait_s} s)")
            raise ResourceExhausted(f"too many failed sign-ins from your address; try again in {wait_s} s")
        return attempt

    async def succeeded(self, attempt: Attempt, *, time_left: float | None = None) -> None:
        """A right password: the pair starts over, and its attempt no longer counts for the address.

        Giving the address its attempt back gains an attacker with one valid account nothing: each
        success cost the attempt it returns.
        """
        async with self._mongo.bounded("reset the sign-in counter", time_left):
            await self._attempts.delete_one({"_id": attempt.pair_id})
            await self._attempts.update_one(
                {"$and": [{"_id": attempt.address_id}, {"n": {"$gt": 0}}]}, {"$inc": {"n": -1}}
            )

    async def unlock(self, *, username: str, time_left: float | None = None) -> int:
        """Forget username's failed attempts from every address; how many records were removed."""
        async with self._mongo.bounded("clear the failed sign-ins", time_left):
            result = await self._attempts.delete_many({"username": username})
        return result.deleted_count

    async def _take(self, key: str, condition: Document, update: Document, time_left: float | None) -> bool:
        """The conditional upsert of document `key`: whether it counted (False: condition refused).

        `update_one`, not `find_one_and_update`: nx-27017 stores the dates of the latter's $set as
        strings (which a TTL index never expires) and ignores its $setOnInsert. The explicit $and
        means the same to MongoDB as {_id: key, ...}, but nx-27017 applies that implicit form to
        another document when a clause of the $or has several fields.
        """
        try:
            async with self._mongo.bounded("count the sign-in attempt", time_left):
                await self._attempts.update_one({"$and": [{"_id": key}, condition]}, update, upsert=True)
        except DuplicateKeyError:
            # The document exists but does not match: the upsert's insert collides with it.
            return False
        return True

    async def _pair_wait(
        self, pair_id: str, *, now: float, window_ends: float, time_left: float | None
    ) -> int:
        """Whole seconds until the pair may guess again (its delay, or the next window if sooner)."""
        async with self._mongo.bounded("read the sign-in counter", time_left):
            doc = await self._attempts.find_one({"_id": pair_id})
        wait = window_ends - now
        if doc is not None:
            wait = min(wait, float(doc["last"]) + self.policy.delay_before(int(doc["n"]) + 1) - now)
        return max(1, math.ceil(wait))
