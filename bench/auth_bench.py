"""`nox -s bench -- auth`: what the policy check costs each authenticated call (Predict included).

The check alone, in this process on uvloop, against a real nx-27017:
  token only: verifying the (cached) token and comparing roles, what every call did before users'
              states were checked: the reference;
  state cached: the check as it is, the user's state in the per-process cache (AUTH_USER_CACHE_S),
              what almost every call costs;
  state read:  AUTH_USER_CACHE_S=0, the state read from MongoDB on every call: what the first call
              of a user after each cache period costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

from backend.auth.interceptor import authorize
from backend.auth.policy import POLICY
from backend.auth.repository import UserRepository
from backend.auth.roles import Role
from backend.auth.tokens import TokenCodec
from backend.auth.user_states import UserStates
from backend.mongo import Document
from scripts.processes import NxServer

PREDICT = "/fruitstack.v1.PredictionService/Predict"
KEY = b"bench-token-signing-key-0123456789abcdef"


async def per_call_us(check: Callable[[], Awaitable[object]], *, calls: int, rounds: int) -> list[float]:
    """Microseconds per call, one figure per round (after a warm-up round)."""
    results = []
    for round_ in range(rounds + 1):
        started = time.perf_counter()
        for _ in range(calls):
            await check()
        if round_:
            results.append((time.perf_counter() - started) / calls * 1e6)
    return results


async def run(uri: str, *, calls: int, rounds: int) -> dict[str, list[float]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri, tz_aware=True)
    try:
        users = UserRepository(client, database="auth_bench", timeout_s=2)
        await users.create(username="ann", password_hash="!", role=Role.VIEWER, token_version=7)
        tokens = TokenCodec(KEY, ttl_s=3600)
        token = tokens.issue(username="ann", role=Role.VIEWER, version=7).token
        rule = POLICY[PREDICT]
        cached, uncached = UserStates(users, cache_s=3600), UserStates(users, cache_s=0)

        async def token_only() -> object:
            principal = tokens.verify(token)
            return rule.allows(principal.role)

        async def with_cache() -> object:
            return await authorize(
                PREDICT, rule, token, tokens=tokens, users=cached, allow_anonymous_reads=False
            )

        async def with_read() -> object:
            return await authorize(
                PREDICT, rule, token, tokens=tokens, users=uncached, allow_anonymous_reads=False
            )

        return {
            "token only (before)": await per_call_us(token_only, calls=calls, rounds=rounds),
            "state cached": await per_call_us(with_cache, calls=calls, rounds=rounds),
            "state read from MongoDB": await per_call_us(
                with_read, calls=max(calls // 50, 100), rounds=rounds
            ),
        }
    finally:
        await client.drop_database("auth_bench")
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=50_000, help="checks per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fruitstack-auth-bench-") as tmp:
        mongo = NxServer(Path(tmp) / "nx-27017").start()
        try:
            results = uvloop.run(run(mongo.uri, calls=args.calls, rounds=args.rounds))
        finally:
            mongo.stop()
    table = Table(title="the policy check of one Predict call (us per call, median of rounds)")
    table.add_column("check")
    table.add_column("median us", justify="right")
    table.add_column("rounds", justify="right")
    for name, values in results.items():
        table.add_row(name, f"{statistics.median(values):.2f}", " ".join(f"{v:.2f}" for v in values))
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
