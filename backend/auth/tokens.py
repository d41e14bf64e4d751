"""Signed access tokens: JWTs (HS256, PyJWT) naming a user and their token version, for a short while.

The token says who; what that user may do now is read on every call (backend.auth.user_states):
their current role, whether they are disabled, and whether the token's version (`ver`) is still
theirs. Raising a user's version (a new password, a disable) revokes every token issued before.
The `role` claim is what the user had at sign-in, for the client's information only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from backend.auth.roles import Role
from backend.exceptions import Unauthenticated

ISSUER = "fruitstack"
_ALGORITHM = "HS256"
# Verified tokens, remembered so that a client's every call does not decode and re-check the
# same JWT (85 us of CPU per call measured; a dict hit is well under 1 us). The key is the whole
# token, signature included, so only a byte-identical token hits; expiry is checked on every hit.
_CACHE_SIZE = 4096
SIGN_IN_AGAIN = "sign in again (fruitstack.v1.AuthService/Login)"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for."""

    username: str
    role: Role  # at sign-in; authorization uses the user's current role
    expires_at: float  # seconds since the epoch
    version: int = 0  # the user's token version when it was issued


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    principal: Principal


class TokenCodec:
    def __init__(self, secret: bytes, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock
        self._verified: dict[str, Principal] = {}

    def issue(self, *, username: str, role: Role, version: int) -> IssuedToken:
        now = int(self._clock())
        expires_at = now + int(self._ttl_s)
        claims = {
            "iss": ISSUER,
            "sub": username,
            "role": role.label,
            "ver": version,
            "iat": now,
            "exp": expires_at,
        }
        token = jwt.encode(claims, self._secret, algorithm=_ALGORITHM)
        principal = Principal(username=username, role=role, expires_at=expires_at, version=version)
        return IssuedToken(token, principal)

    def verify(self, token: str) -> Principal:
        """The principal of a token this server signed and that has not expired; else Unauthenticated."""
        known = self._verified.get(token)
        if known is not None:
            self._check_expiry(known.expires_at)
            return known
        principal = self._decode(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()  # simple bound: tokens are re-verified once after a clear
        self._verified[token] = principal
        return principal

    def _check_expiry(self, expires_at: float) -> None:
        if expires_at <= self._clock():
            expired = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            raise Unauthenticated(f"the access token expired at {expired}; {SIGN_IN_AGAIN}")

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],  # never "none", never a key confusion with another algorithm
                issuer=ISSUER,
                # Expiry is checked below against this codec's clock (PyJWT reads the system clock).
                options={
                    "require": ["exp", "iat", "sub", "iss", "ver"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            expires_at = float(claims["exp"])
            role = Role[str(claims["role"]).upper()]
            version = claims["ver"]
            if type(version) is not int:
                raise TypeError("ver")
        except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
            raise Unauthenticated(
                f"the access token is not valid (not signed by this server, or altered); {SIGN_IN_AGAIN}"
            ) from None
        self._check_expiry(expires_at)
        return Principal(username=str(claims["sub"]), role=role, expires_at=expires_at, version=version)
