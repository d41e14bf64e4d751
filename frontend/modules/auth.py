"""Sign-in: the sign-in page, who is signed in (navbar), and the permission gates.

Until a user signs in, the page is the sign-in form and nothing else (frontend/app.py renders the
app only for a signed-in session). The session's token lives in its own `Credentials`
(frontend.client), never in anything shared. Signing out, or the backend refusing the token (it
expired, or the backend restarted with another key), ends the browser session: the server closes
it, dropping everything it held (data, messages, uploads), and the browser loads a fresh sign-in
page that says why. A page never outlives its sign-in, so the next person at that browser cannot
see, nor continue, the last one's work.

A *permission gate* wraps controls the backend allows only some roles (adding fruits needs an
editor, updating the model an admin): a `<fieldset>` that the server disables, with the reason
shown beside it. It starts disabled, so nothing is usable before the server has said who is
signed in. The backend enforces the same rules (backend/auth/policy.py); the gates only spare a
user buttons that would be refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from shiny import Inputs, Outputs, Session, module, reactive, render, ui
from shiny.module import resolve_id
from shiny.ui import Tag, TagChild

from frontend.client import Credentials, FruitstackClient, SignedIn
from frontend.exceptions import user_message

# Custom messages handled by frontend/www/fruitstack.js.
GATE_MESSAGE = "fruitstack-gate"
LEAVE_MESSAGE = "fruitstack-leave"

# Why a fresh sign-in page was opened: a fixed code in its URL (`?signed_out=CODE`), never text
# from the URL itself, so a crafted link cannot make the sign-in page say anything else.
LEAVE_REASONS = {
    "signed_out": "You signed out.",
    "expired": (
        "You were signed out: the backend no longer accepts your sign-in (it expired, or the backend"
        " restarted). Sign in again."
    ),
}


def leave_reason(url_search: str) -> str:
    """The sentence for `?signed_out=CODE` in a page's query string, or "" for none or an unknown code."""
    codes = parse_qs(url_search.removeprefix("?")).get("signed_out", [])
    return LEAVE_REASONS.get(codes[0], "") if codes else ""


def permission_gate(
    gate_id: str, *controls: TagChild, reason: str = "Sign in first.", allowed: bool = False
) -> Tag:
    """Controls that only some roles may use, disabled until the server allows them.

    allowed: the state to render with (controls rendered inside a render function know it already).
    """
    full_id = resolve_id(gate_id)
    return ui.div(
        ui.tags.fieldset(*controls, id=full_id, disabled=not allowed, class_="permission-gate"),
        ui.div(
            "" if allowed else reason, id=f"{full_id}-reason", class_="form-text text-body-secondary small"
        ),
    )


def who_may(role: str) -> str:
    return {"viewer": "a viewer, editor or admin", "editor": "an editor or admin", "admin": "an admin"}[role]


def permission(user: SignedIn | None, *, role: str, action: str) -> tuple[bool, str]:
    """Whether `user` may do `action` (needing `role`), and if not, a sentence saying why."""
    if user is None:
        return False, f"Sign in as {who_may(role)} to {action}."
    if user.may(role):
        return True, ""
    return (
        False,
        f"To {action} you need to be {who_may(role)}; you are signed in as {user.username} ({user.role}).",
    )


async def update_gate(session: Session, gate_id: str, allowed: bool, reason: str) -> None:
    await session.send_custom_message(
        GATE_MESSAGE, {"id": session.ns(gate_id), "allowed": allowed, "reason": reason}
    )


@dataclass(frozen=True)
class Auth:
    """What the auth module gives the others: who is signed in (None: nobody)."""

    user: Callable[[], SignedIn | None]


@module.ui
def sign_in_ui() -> TagChild:
    """The sign-in page: the only thing a session shows before it is signed in."""
    return ui.div(
        ui.card(
            ui.card_header(ui.h1("Sign in to fruitstack", class_="h5 mb-0")),
            ui.output_ui("reason"),
            # Sent on blur (or Enter), not debounced: clicking "Sign in" blurs the field first,
            # so the click can never reach the server before the value it is about.
            ui.input_text("username", "Username", autocomplete="username", width="100%", update_on="blur"),
            ui.input_password("password", "Password", width="100%", update_on="blur"),
            ui.div(ui.output_text("error", inline=True), class_="text-danger small", role="alert"),
            ui.input_task_button("sign_in", "Sign in", label_busy="Signing in…"),
            id=resolve_id("form"),
        ),
        class_="sign-in-page",
    )


@module.ui
def who_ui() -> TagChild:
    """Who is signed in, and Sign out (the navbar's right end)."""
    return ui.output_ui("who", inline=True)


@module.server
def auth_server(
    input: Inputs, output: Outputs, session: Session, *, client: FruitstackClient, credentials: Credentials
) -> Auth:
    user: reactive.Value[SignedIn | None] = reactive.value(None)
    error_text: reactive.Value[str] = reactive.value("")

    @ui.bind_task_button(button_id="sign_in")
    @reactive.extended_task
    async def sign_in(username: str, password: str) -> SignedIn:
        return await client.login(username=username, password=password)

    @reactive.effect
    @reactive.event(input.sign_in)
    def _sign_in() -> None:
        error_text.set("")
        sign_in(input.username(), input.password())

    @reactive.effect
    def _signed_in() -> None:
        status = sign_in.status()
        with reactive.isolate():
            if status == "success":
                signed = sign_in.value()
                credentials.token = signed.token
                user.set(signed)
            elif status == "error":
                # The backend's words: a wrong password, or after too many, when to try again.
                error_text.set(user_message(sign_in.error()))

    async def leave(code: str) -> None:
        """End this session: forget the token, send the browser to a fresh sign-in page, close."""
        credentials.token = None
        user.set(None)  # the page goes back to the sign-in form at once
        await session.send_custom_message(LEAVE_MESSAGE, {"code": code})
        # Closing drops the session's reactive state and its uploaded files (Shiny removes its
        # upload directory) even if the browser ignored the message.
        await session.close()

    @reactive.poll(lambda: credentials.rejections, interval_secs=0.5)
    def rejections() -> int:
        return credentials.rejections

    @reactive.effect
    @reactive.event(rejections, ignore_init=True)
    async def _token_refused() -> None:
        if credentials.token is not None:
            await leave("expired")

    @reactive.effect
    @reactive.event(input.sign_out)
    async def _sign_out() -> None:
        await leave("signed_out")

    @render.ui
    def reason() -> TagChild:
        text = leave_reason(session.clientdata.url_search())
        return ui.div(text, class_="alert alert-info py-2", role="status") if text else None

    @render.text
    def error() -> str:
        return error_text()

    @render.ui
    def who() -> TagChild:
        current = user()
        if current is None:
            return None
        return ui.span(
            ui.span(f"{current.username} ({current.role})", id=session.ns("who_text"), class_="me-2 small"),
            ui.input_action_button("sign_out", "Sign out", class_="btn-sm btn-outline-secondary"),
        )

    @reactive.calc
    def current() -> SignedIn | None:
        return user()

    return Auth(user=current)
