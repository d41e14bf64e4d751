"""The app's ASGI middleware, in process on the real app (create_app): headers and bounded uploads.

No backend is needed: these requests never reach a module that calls it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from shiny import ui
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from frontend.app import create_app
from frontend.client import FruitstackClient
from frontend.config import Settings
from frontend.middleware import INLINE_SCRIPT_SHA256, BoundedUploads, SecurityHeaders, UploadGate, size_text
from frontend.modules.auth import leave_reason

MAX_BYTES = 1000
SESSION = "signed-in-session"


def app_and_gate() -> tuple[ASGIApp, UploadGate]:
    """The real app, with an upload gate that this test opens for SESSION as a sign-in would."""
    settings = Settings(_env_file=None, max_upload_bytes=MAX_BYTES)  # type: ignore[call-arg]
    gate = UploadGate()
    gate.allow(SESSION)
    client = FruitstackClient("127.0.0.1:9", timeout_s=1, bulk_timeout_s=1)
    return create_app(settings, client=client, upload_gate=gate), gate


def client_for(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


def assert_secure(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src "))
    assert "unsafe" not in script_src  # no 'unsafe-inline', no 'unsafe-eval' for scripts
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"


async def test_every_kind_of_response_carries_the_security_headers() -> None:
    app, _gate = app_and_gate()
    async with client_for(app) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert_secure(page)
        # A script and a stylesheet the page links to (Shiny's own, and the app's).
        links = page.text.split('"')
        for url in (next(p for p in links if p.endswith("fruitstack.js")), "lib/shiny-1.8.0/shiny.js"):
            asset = await client.get("/" + url)
            assert asset.status_code == 200, url
            assert_secure(asset)
        missing = await client.get("/no-such-page")
        assert missing.status_code == 404
        assert_secure(missing)
        refused = await client.post("/session/someone-else/upload/job", content=b"x")
        assert refused.status_code == 403
        assert_secure(refused)
        too_large = await client.post(f"/session/{SESSION}/upload/job", content=b"x" * (MAX_BYTES + 1))
        assert too_large.status_code == 413
        assert_secure(too_large)


async def test_the_policy_allows_exactly_the_inline_scripts_shiny_writes() -> None:
    app, _gate = app_and_gate()
    async with client_for(app) as client:
        page = await client.get("/")
    # The page's own, and those of the rendered UI the app uses: cards, and a modal (the rollback).
    html = page.text + str(ui.card("x")) + str(ui.modal("x"))
    inline = [
        m["body"]
        for m in re.finditer(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script>", html, re.S)
        # Scripts with a src are files ('self'); JSON and dependency lists are data, never run.
        if "src=" not in m["attrs"] and "application/" not in m["attrs"]
    ]
    digests = {base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() for body in inline}
    assert digests == set(INLINE_SCRIPT_SHA256)


async def test_the_page_before_sign_in_holds_no_input_but_the_sign_in_form() -> None:
    app, _gate = app_and_gate()
    async with client_for(app) as client:
        html = (await client.get("/")).text
    # The server fills the page over the websocket; the HTML itself holds no tab and no file input.
    assert 'type="file"' not in html
    assert "navbar" not in html
    assert 'id="page"' in html


async def test_an_upload_from_a_session_that_is_not_signed_in_is_refused() -> None:
    app, gate = app_and_gate()
    async with client_for(app) as client:
        response = await client.post("/session/anonymous/upload/job", content=b"a,b\n1,2\n")
        assert (response.status_code, response.text) == (403, "Sign in to upload files.")
        gate.revoke(SESSION)
        response = await client.post(f"/session/{SESSION}/upload/job", content=b"a,b\n1,2\n")
        assert response.status_code == 403


def body_reader() -> Starlette:
    """Reads an upload's whole body, as Shiny's upload handler does (Shiny reads none for a session
    it does not know, and only a browser has a session, hence this stand-in)."""

    async def upload(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    return Starlette(routes=[Route("/session/{session}/upload/{job}", upload, methods=["POST"])])


async def test_an_upload_past_the_cap_is_refused_by_its_length_or_as_it_streams() -> None:
    gate = UploadGate()
    gate.allow(SESSION)
    app = SecurityHeaders(BoundedUploads(body_reader(), gate=gate, max_bytes=MAX_BYTES))
    message = f"This file is larger than {size_text(MAX_BYTES)}, the most this app accepts for scoring."

    async def chunks(total: int) -> AsyncIterator[bytes]:
        # Sent without a Content-Length: the middleware counts the bytes as they arrive.
        for _ in range(total // 100):
            yield b"x" * 100

    async with client_for(app) as client:
        url = f"/session/{SESSION}/upload/job"
        declared = await client.post(url, content=b"x" * (MAX_BYTES + 1))
        assert (declared.status_code, declared.text) == (413, message)
        streamed = await client.post(url, content=chunks(MAX_BYTES + 100))
        assert (streamed.status_code, streamed.text) == (413, message)
        assert_secure(streamed)
        at_cap = await client.post(url, content=chunks(MAX_BYTES))
        assert (at_cap.status_code, at_cap.text) == (200, str(MAX_BYTES))
        gate.revoke(SESSION)
        assert (await client.post(url, content=b"1")).status_code == 403


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("?signed_out=signed_out", "You signed out."),
        ("?signed_out=expired", "You were signed out: the backend no longer accepts your sign-in"),
        ("", ""),
        ("?signed_out=Call+0800+now", ""),  # a crafted link cannot put its words on the page
    ],
)
def test_the_sign_in_page_says_why_only_in_the_apps_words(search: str, expected: str) -> None:
    reason = leave_reason(search)
    assert reason.startswith(expected)
    if not expected:
        assert reason == ""


def test_sizes_read_as_a_person_reads_them() -> None:
    assert [size_text(n) for n in (16_000_000, 1_500_000, 900_000, 12)] == [
        "16 MB",
        "1.5 MB",
        "900 kB",
        "12 bytes",
    ]
