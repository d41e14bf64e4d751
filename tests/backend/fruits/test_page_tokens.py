"""Unit tests of the signed page tokens."""

from __future__ import annotations

import base64

import pytest

from backend.exceptions import InvalidArgument
from backend.fruits.page_tokens import PageTokenCodec

CODEC = PageTokenCodec(b"unit-test-secret-0123456789")


@pytest.mark.parametrize("seq", [0, 1, 50, 2**53])
def test_round_trip(seq: int) -> None:
    assert CODEC.decode(CODEC.encode(after_seq=seq)) == seq


def _forge(payload: bytes, mac_from: str) -> str:
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + mac_from.partition(".")[2]


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        ".",
        "abc.def",
        "!!!.???",
        "x" * 600,
        CODEC.encode(after_seq=10)[:-2],  # truncated signature
        CODEC.encode(after_seq=10) + "A",
        _forge(b'{"v":1,"seq":999}', CODEC.encode(after_seq=10)),  # edited position, old signature
        PageTokenCodec(b"another-secret-0123456789").encode(after_seq=10),  # signed by someone else
    ],
)
def test_tampered_or_foreign_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token is invalid"):
        CODEC.decode(token)


def test_token_is_opaque_and_url_safe() -> None:
    token = CODEC.encode(after_seq=12345)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
