"""Opaque, HMAC-signed ListFruits page tokens, so clients cannot forge or edit a position."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from backend.exceptions import InvalidArgument

_VERSION = 1
_MAC_BYTES = 16


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokenCodec:
    """Turns the keyset position (the `seq` of the last fruit served) into a token and back."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, *, after_seq: int) -> str:
        payload = json.dumps({"v": _VERSION, "seq": after_seq}, separators=(",", ":")).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def decode(self, token: str) -> int:
        """The position a token stands for; InvalidArgument if it was not issued by this server."""
        invalid = InvalidArgument("page_token is invalid; pass the next_page_token of a previous response")
        payload_text, _, mac_text = token.partition(".")
        if not payload_text or not mac_text or len(token) > 512:
            raise invalid
        try:
            payload, mac = _b64decode(payload_text), _b64decode(mac_text)
        except (binascii.Error, ValueError):
            raise invalid from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise invalid
        try:
            data = json.loads(payload)
        except ValueError:
            raise invalid from None
        if not isinstance(data, dict) or data.get("v") != _VERSION:
            raise invalid
        seq = data.get("seq")
        if type(seq) is not int or seq < 0:
            raise invalid
        return seq
