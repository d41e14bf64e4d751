"""Access tokens: the codec alone, and expired or tampered tokens refused by a real server."""

from __future__ import annotations

import base64
import json

import grpc
import jwt
import pytest
from fruitstack.v1 import fruits_pb2, fruits_pb2_grpc
from grpc import aio
from pydantic import SecretStr

from backend.auth.roles import Role
from backend.auth.tokens import AUDIENCE, TokenCodec, key_id
from backend.exceptions import Unauthenticated
from tests.fixtures.backend import (
    TEST_AUTH_TOKEN_SECRET,
    RunningBackend,
    backend_settings,
    bearer,
    mint_token,
    running_backend,
)

KEY = TEST_AUTH_TOKEN_SECRET.encode()
NOW = 1_800_000_000.0


def codec(now: float = NOW, key: bytes = KEY) -> TokenCodec:
    return TokenCodec(key, ttl_s=600, clock=lambda: now)


def claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def tampered(token: str, **changes: object) -> str:
    """The token with its claims edited and its signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


def test_a_token_names_its_user_role_and_expiry() -> None:
    issued = codec().issue(username="alice", role=Role.EDITOR, version=0)
    principal = codec(now=NOW + 599).verify(issued.token)

    assert (principal.username, principal.role) == ("alice", Role.EDITOR)
    assert principal.expires_at == NOW + 600 == issued.principal.expires_at


def test_an_expired_token_is_refused_saying_when_it_expired() -> None:
    old = codec(now=NOW - 3600).issue(username="alice", role=Role.EDITOR, version=0).token

    with pytest.raises(
        Unauthenticated, match=r"the access token expired at 2027-01-15 07:10:00 UTC; sign in"
    ):
        codec().verify(old)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: tampered(t, role="admin"), id="role-raised"),
        pytest.param(lambda t: tampered(t, sub="mallory"), id="other-user"),
        pytest.param(lambda t: tampered(t, exp=NOW + 10**8), id="extended"),
        pytest.param(lambda t: t[:-3] + ("AAA" if t[-3:] != "AAA" else "BBB"), id="signature-changed"),
        pytest.param(
            lambda t: (
                codec(key=b"another-key-of-at-least-32-bytes!!")
                .issue(username="a", role=Role.ADMIN, version=0)
                .token
            ),
            id="other-key",
        ),
        pytest.param(
            lambda t: jwt.encode(
                {"sub": "a", "role": "admin", "exp": NOW + 60, "iat": NOW, "iss": "fruitstack"},
                key="",
                algorithm="none",
            ),
            id="alg-none",
        ),
        pytest.param(
            lambda t: jwt.encode(
                {"sub": "a", "role": "admin", "exp": NOW + 60, "iat": NOW, "iss": "fruitstack"},
                key="",
                algorithm="none",
                headers={"kid": key_id(KEY)},
            ),
            id="alg-none-with-our-kid",
        ),
        pytest.param(lambda t: tampered(t, aud="another-service"), id="other-audience"),
        pytest.param(
            lambda t: jwt.encode(
                {**claims_of(t), "aud": "another-service"},
                KEY,
                algorithm="HS256",
                headers={"kid": key_id(KEY)},
            ),
            id="our-key-other-audience",
        ),
        pytest.param(
            lambda t: jwt.encode(
                {k: v for k, v in claims_of(t).items() if k != "jti"},
                KEY,
                algorithm="HS256",
                headers={"kid": key_id(KEY)},
            ),
            id="no-jti",
        ),
        pytest.param(
            lambda t: jwt.encode(
                claims_of(t), b"another-key-of-at-least-32-bytes!!", headers={"kid": key_id(KEY)}
            ),
            id="other-key-claiming-our-kid",
        ),
        pytest.param(lambda t: jwt.encode(claims_of(t), KEY, algorithm="HS256"), id="no-kid"),
        pytest.param(lambda t: "not.a.token", id="garbage"),
    ],
)
def test_a_tampered_or_foreign_token_is_refused(forge: object) -> None:
    token = codec().issue(username="alice", role=Role.VIEWER, version=0).token
    forged = forge(token)  # type: ignore[operator]

    with pytest.raises(Unauthenticated, match="the access token is not valid"):
        codec().verify(forged)


async def test_the_server_refuses_expired_and_tampered_tokens(backend: RunningBackend) -> None:
    stub = fruits_pb2_grpc.FruitServiceStub(backend.plain_channel)
    request = fruits_pb2.AddFruitRequest(name="plum")
    good = mint_token(Role.EDITOR)
    expired = (
        TokenCodec(KEY, ttl_s=60, clock=lambda: 1_000_000.0)
        .issue(username="e", role=Role.EDITOR, version=0)
        .token
    )

    await stub.AddFruit(request, metadata=bearer(good), timeout=10)
    for token, words in [
        (expired, "the access token expired at 1970-01-12 13:47:40 UTC"),
        (tampered(mint_token(Role.VIEWER), role="editor"), "the access token is not valid"),
    ]:
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.AddFruit(request, metadata=bearer(token), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (caught.value.details() or "").startswith(words)
        assert "sign in again (fruitstack.v1.AuthService/Login)" in (caught.value.details() or "")


@pytest.mark.parametrize("value", ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer   ", "token-without-scheme"])
async def test_authorization_metadata_that_is_not_a_bearer_token_is_refused(
    backend: RunningBackend, value: str
) -> None:
    stub = fruits_pb2_grpc.FruitServiceStub(backend.plain_channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ListFruits(
            fruits_pb2.ListFruitsRequest(), metadata=(("authorization", value),), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == "the authorization metadata must be 'Bearer <token>'"


def test_a_remembered_token_still_expires() -> None:
    """The cache of verified tokens never outlives a token: expiry is checked on every hit."""
    clock = [NOW]
    tokens = TokenCodec(KEY, ttl_s=600, clock=lambda: clock[0])
    token = tokens.issue(username="alice", role=Role.VIEWER, version=0).token
    assert tokens.verify(token).username == "alice"
    assert tokens.verify(token).username == "alice"  # from the cache

    clock[0] += 600
    with pytest.raises(Unauthenticated, match="the access token expired"):
        tokens.verify(token)
    with pytest.raises(Unauthenticated, match="is not valid"):
        tokens.verify(tampered(token, role="admin"))


def test_a_token_names_its_audience_key_and_a_unique_id() -> None:
    first, second = (codec().issue(username="alice", role=Role.VIEWER, version=3).token for _ in range(2))
    assert first != second  # same user, same second: the jti differs
    assert jwt.get_unverified_header(first)["kid"] == key_id(KEY)
    claims = claims_of(first)
    assert (claims["aud"], claims["ver"]) == (AUDIENCE, 3)
    assert claims["jti"] != claims_of(second)["jti"]
    assert KEY.decode() not in str(jwt.get_unverified_header(first))


ROTATED = b"the-key-after-the-rotation-0123456789"


def test_after_a_rotation_the_previous_keys_tokens_stay_valid_and_an_unknown_keys_are_refused() -> None:
    before = codec().issue(username="alice", role=Role.VIEWER, version=0).token
    rotated = TokenCodec(ROTATED, ttl_s=600, previous=KEY, clock=lambda: NOW)
    assert rotated.verify(before).username == "alice"
    after = rotated.issue(username="bob", role=Role.VIEWER, version=0).token
    assert jwt.get_unverified_header(after)["kid"] == key_id(ROTATED)  # new tokens: the new key
    assert rotated.verify(after).username == "bob"
    # Until they expire, and not a second longer.
    later = TokenCodec(ROTATED, ttl_s=600, previous=KEY, clock=lambda: NOW + 600)
    with pytest.raises(Unauthenticated, match="the access token expired"):
        later.verify(before)
    # Once the previous key is dropped, or for a key never held: refused, saying why.
    for verifier, token in [
        (TokenCodec(ROTATED, ttl_s=600, clock=lambda: NOW), before),
        (
            rotated,
            codec(key=b"someone-elses-key-0123456789abcdef")
            .issue(username="x", role=Role.ADMIN, version=0)
            .token,
        ),
    ]:
        with pytest.raises(Unauthenticated, match="signed with a key this server does not hold"):
            verifier.verify(token)


async def test_a_backend_after_a_rotation_takes_the_previous_keys_tokens(
    mongodb_uri: str, mongodb_database: str
) -> None:
    settings = backend_settings(mongodb_uri=mongodb_uri, mongodb_database=mongodb_database).model_copy(
        update={
            "auth_token_secret": SecretStr(ROTATED.decode()),
            "auth_token_previous_secret": SecretStr(TEST_AUTH_TOKEN_SECRET),
        }
    )
    async with running_backend(settings) as backend:
        stub = fruits_pb2_grpc.FruitServiceStub(backend.plain_channel)
        # mint_token signs with TEST_AUTH_TOKEN_SECRET: the key before the rotation.
        await stub.ListFruits(
            fruits_pb2.ListFruitsRequest(), metadata=bearer(mint_token(Role.VIEWER)), timeout=10
        )
        foreign = (
            TokenCodec(b"someone-elses-key-0123456789abcdef", ttl_s=600)
            .issue(username="test-viewer", role=Role.VIEWER, version=0)
            .token
        )
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.ListFruits(fruits_pb2.ListFruitsRequest(), metadata=bearer(foreign), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "signed with a key this server does not hold" in (caught.value.details() or "")
