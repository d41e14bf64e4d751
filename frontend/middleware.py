"""ASGI middleware around the Shiny app: security headers on every response, and bounded uploads.

Both are plain ASGI (no Starlette `BaseHTTPMiddleware`, which would buffer streamed responses) and
sit outside the whole Shiny app, so they also cover Shiny's own answers: static files, 404s, the
upload and download endpoints, and the 500 page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The tightest policy under which every tab works (checked in Chromium with no CSP violation,
# tests/frontend/test_wall_browser.py). Each source, and why:
# - default-src 'self': nothing loads from another origin (the app needs no CDN, font or API).
# - script-src 'self' and four hashes: Shiny, bslib and our own fruitstack.js are files served by
#   the app, and no eval is needed. Shiny 1.8 writes four fixed inline scripts, each allowed by its
#   SHA-256 (never 'unsafe-inline', so injected markup could not run script): in the page, the
#   flags of its busy indicators and bootstrap-datepicker's noConflict() (a dependency of every
#   Shiny page); in rendered UI, every card's initialisation and the modal's show() (the rollback
#   confirmation). tests/frontend/test_middleware.py fails if a Shiny upgrade changes any of them.
# - style-src 'self' 'unsafe-inline': Shiny and bslib write `style="..."` attributes (plot sizes,
#   card heights, the upload progress bar) and set styles from script; nonces and hashes do not
#   cover style attributes, so inline styles are allowed (styles cannot run script).
# - img-src 'self' data:: plots arrive as data: URLs (render.plot), and Bootstrap's icons (the
#   select arrow, the busy spinner) are data: SVGs in its CSS.
# - font-src 'self' data:: bslib's fonts are files of the app; data: for any inlined by the theme.
# - connect-src 'self': the websocket and the upload/download requests go to this origin only.
# - frame-ancestors 'none': no other page can frame the app (clickjacking of Delete or Update).
# - base-uri 'self', form-action 'self', object-src 'none': no <base> hijack, no form posting
#   elsewhere, no plugins.
INLINE_SCRIPT_SHA256 = (
    "erP5hScmId9gRru9k52QQl/lSJmUl8NfFAiLNMbPtcg=",  # document.documentElement.dataset.shinyBusy...
    "gb2teCJPKprj3suUu96YMl66Mzjq9dgXvxYaiNc7fh4=",  # (function() { var datepicker = $.fn.datepicker...
    "aCEcZ8ZsbN5f+CiTes11v7ad4BgnqPUYcTKPN1aGjf0=",  # window.bslib.Card.initializeAllCards();
    "7fDcvXDX2KWh2IlRZiwb8oN4aJ385BLqYs5ILa13Vi8=",  # if (window.bootstrap && !window.bootstrap.Modal...
)
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' " + " ".join(f"'sha256-{digest}'" for digest in INLINE_SCRIPT_SHA256),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
    )
)

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    # The browser believes the Content-Type: an uploaded or downloaded CSV is never run as script.
    ("X-Content-Type-Options", "nosniff"),
    # Links to MLflow and Prefect tell them the origin only, never a path of the app.
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    # For browsers that predate frame-ancestors.
    ("X-Frame-Options", "DENY"),
)


class SecurityHeaders:
    """Adds fixed headers to every HTTP response (and websocket handshake) of the wrapped app."""

    def __init__(self, app: ASGIApp, headers: Iterable[tuple[str, str]] = SECURITY_HEADERS) -> None:
        self.app = app
        self.headers = tuple(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = MutableHeaders(scope=message)  # edits message["headers"] in place
                for name, value in self.headers:
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UploadGate:
    """The Shiny sessions that may upload files: those signed in (the app's server keeps it current)."""

    def __init__(self) -> None:
        self._sessions: set[str] = set()

    def allow(self, session_id: str) -> None:
        self._sessions.add(session_id)

    def revoke(self, session_id: str) -> None:
        self._sessions.discard(session_id)

    def allows(self, session_id: str) -> bool:
        return session_id in self._sessions


# Where shiny.js posts a file's bytes (after the uploadInit message over the websocket).
_UPLOAD_PATH = re.compile(r"/session/(?P<session>[^/]+)/upload/")


class _TooLarge(Exception):
    pass


def size_text(n_bytes: int) -> str:
    """A size as a person reads it: '16 MB', '1.5 MB', '900 kB' (decimal units, as browsers show)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n_bytes} bytes"


def too_large_message(max_bytes: int) -> str:
    return f"This file is larger than {size_text(max_bytes)}, the most this app accepts for scoring."


class BoundedUploads:
    """Refuses an upload from a session that is not signed in (403) or larger than max_bytes (413).

    Shiny writes an upload's bytes to a temporary file as they arrive and the app then reads the
    file into memory (pandas), so the cap is enforced here, on the request, before either: by the
    declared Content-Length, and by counting the bytes as they stream in (a client may send no
    length, or lie). shiny.js shows the refusal's text under the file input.
    """

    def __init__(self, app: ASGIApp, *, gate: UploadGate, max_bytes: int) -> None:
        self.app = app
        self.gate = gate
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _UPLOAD_PATH.search(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if not self.gate.allows(match["session"]):
            await PlainTextResponse("Sign in to upload files.", status_code=403)(scope, receive, send)
            return
        too_large = PlainTextResponse(too_large_message(self.max_bytes), status_code=413)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return

        received = 0
        refused = False

        async def bounded_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise _TooLarge
            return message

        async def send_unless_refused(message: Message) -> None:
            # Once refused, the app's own answer (Starlette's 500 for the aborted stream) is dropped.
            if not refused:
                await send(message)

        try:
            await self.app(scope, bounded_receive, send_unless_refused)
        except _TooLarge:
            await too_large(scope, receive, send)
