"""Signed access tokens: JWTs (HS256, PyJWT) naming a user and their token version, for a short while.

The token says who; what that user may do now is read on every call (backend.auth.user_states):
their current role, whether they are disabled, and whether the token's version (`ver`) is still
theirs. Raising a user's version (a new password, a disable) revokes every token issued before.
The `role` claim is what the user had at sign-in, for the client's information only.

Each token names its audience (`aud`: only this backend accepts it), has a unique id (`jti`: two
sign-ins in one second differ, and a token can be named in a log without being shown), and its
header names the signing key (`kid`, derived from the key). A rotation keeps the previous key for
verification (AUTH_TOKEN_PREVIOUS_SECRET): tokens it signed stay valid until they expire, at most
AUTH_TOKEN_TTL_S after the rotation, so nobody is signed out by it, and replicas still on the old
key during a rolling restart keep working with the new ones. New tokens are signed with the
current key only.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from backend.auth.roles import Role
from backend.exceptions import Unauthenticated

ISSUER = "fruitstack"
AUDIENCE = "fruitstack-backend"
_ALGORITHM = "HS256"
# Verified tokens, remembered so that a client's every call does not decode and re-check the
# same JWT (85 us of CPU per call measured; a dict hit is well under 1 us). The key is the whole
# token, signature included, so only a byte-identical token hits; expiry is checked on every hit.
_CACHE_SIZE = 4096
SIGN_IN_AGAIN = "sign in again (fruitstack.v1.AuthService/Login)"
_NOT_VALID = "the access token is not valid"


def key_id(secret: bytes) -> str:
    """The `kid` of a signing key: a hash of it, which tells nothing of the key (it is 256 bits)."""
    return hashlib.sha256(b"fruitstack access token key id\0" + secret).hexdigest()[:16]


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
    def __init__(
        self,
        secret: bytes,
        *,
        ttl_s: float,
        previous: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._kid = key_id(secret)
        # kid -> key, for verification: the current key and, during a rotation, the previous one.
        self._keys = {self._kid: secret}
        if previous:
            self._keys.setdefault(key_id(previous), previous)
        self._ttl_s = ttl_s
        self._clock = clock
        self._verified: dict[str, Principal] = {}

    def issue(self, *, username: str, role: Role, version: int) -> IssuedToken:
        now = int(self._clock())
        expires_at = now + int(self._ttl_s)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "jti": secrets.token_urlsafe(12),
            "sub": username,
            "role": role.label,
            "ver": version,
            "iat": now,
            "exp": expires_at,
        }
        token = jwt.encode(claims, self._secret, algorithm=_ALGORITHM, headers={"kid": self._kid})
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

    def _key(self, token: str) -> bytes:
        """The key the token's header names; Unauthenticated if it names none this server holds."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError:
            kid = None
        if not isinstance(kid, str):
            raise Unauthenticated(f"{_NOT_VALID} (it names no signing key); {SIGN_IN_AGAIN}")
        key = self._keys.get(kid)
        if key is None:
            raise Unauthenticated(
                f"{_NOT_VALID}: it was signed with a key this server does not hold (a key rotated out,"
                f" or another server's); {SIGN_IN_AGAIN}"
            )
        return key

    def _decode(self, token: str) -> Principal:
        key = self._key(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],  # never "none", never a key confusion with another algorithm
                issuer=ISSUER,
                audience=AUDIENCE,
                # Expiry is checked below against this codec's clock (PyJWT reads the system clock).
                options={
                    "require": ["exp", "iat", "sub", "iss", "aud", "jti", "ver"],
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
                f"{_NOT_VALID} (not signed by this server, or altered); {SIGN_IN_AGAIN}"
            ) from None
        self._check_expiry(expires_at)
        return Principal(username=str(claims["sub"]), role=role, expires_at=expires_at, version=version)
