"""Sign-in: a form in a modal dialog, who is signed in (navbar), and the permission gates.

The session's token lives in its own `Credentials` (frontend.client), never in anything shared.
When the backend refuses the token (it expired, or the backend restarted with another key), the
dialog opens again with the reason; the panels keep showing what they showed, and their next
refresh after signing in brings them up to date.

A *permission gate* wraps controls the backend allows only some roles (adding fruits needs an
editor, updating the model an admin): a `<fieldset>` that the server disables, with the reason
shown beside it. It starts disabled, so nothing is usable before the server has said who is
signed in. The backend enforces the same rules (backend/auth/policy.py); the gates only spare a
user buttons that would be refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shiny import Inputs, Outputs, Session, module, reactive, render, ui
from shiny.module import resolve_id
from shiny.ui import Tag, TagChild

from frontend.client import Credentials, FruitstackClient, SignedIn
from frontend.exceptions import NotSignedIn, user_message

GATE_MESSAGE = "fruitstack-gate"

# Installed once per page (frontend/app.py). The gate handler enables or disables a gate and shows
# its reason. The focus handler puts the cursor in the dialog's first field once it is shown:
# Bootstrap focuses the dialog itself at the end of its fade-in, which would otherwise swallow
# whatever the user (or a test) began typing meanwhile.
PAGE_SCRIPT = f"""
Shiny.addCustomMessageHandler({GATE_MESSAGE!r}, function (message) {{
  var gate = document.getElementById(message.id);
  if (gate) {{ gate.disabled = !message.allowed; }}
  var reason = document.getElementById(message.id + "-reason");
  if (reason) {{ reason.textContent = message.allowed ? "" : message.reason; }}
}});
document.addEventListener("shown.bs.modal", function (event) {{
  var field = event.target.querySelector("input");
  if (field) {{ field.focus(); }}
}});
"""


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
def auth_ui() -> TagChild:
    return ui.output_ui("who", inline=True)


@module.server
def auth_server(
    input: Inputs, output: Outputs, session: Session, *, client: FruitstackClient, credentials: Credentials
) -> Auth:
    user: reactive.Value[SignedIn | None] = reactive.value(None)
    # Why the dialog asks again ("your sign-in expired ..."), or "" for a first sign-in.
    prompt_reason: reactive.Value[str] = reactive.value("")
    error_text: reactive.Value[str] = reactive.value("")

    def show_dialog() -> None:
        reason = prompt_reason()
        ui.modal_show(
            ui.modal(
                ui.div(
                    f"{reason} Sign in again; the page keeps what it shows." if reason else "",
                    class_="alert alert-warning py-2" if reason else "",
                    id=session.ns("reason"),
                ),
                # Sent on blur (or Enter), not debounced: clicking "Sign in" blurs the field first,
                # so the click can never reach the server before the value it is about.
                ui.input_text(
                    "username", "Username", autocomplete="username", width="100%", update_on="blur"
                ),
                ui.input_password("password", "Password", width="100%", update_on="blur"),
                ui.div(ui.output_text("error", inline=True), class_="text-danger small", role="alert"),
                title="Sign in to fruitstack",
                footer=ui.TagList(
                    ui.modal_button("Not now"),
                    ui.input_task_button("sign_in", "Sign in", label_busy="Signing in…"),
                ),
                easy_close=False,
            )
        )

    @reactive.effect
    def _ask_at_start() -> None:
        with reactive.isolate():
            show_dialog()

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
                prompt_reason.set("")
                ui.modal_remove()
            elif status == "error":
                # The backend's words: a wrong password, or after too many, when to try again.
                error_text.set(user_message(sign_in.error()))

    @reactive.poll(lambda: credentials.rejections, interval_secs=0.5)
    def rejections() -> int:
        return credentials.rejections

    @reactive.effect
    @reactive.event(rejections, ignore_init=True)
    def _token_refused() -> None:
        if credentials.token is None:
            return
        credentials.token = None
        user.set(None)
        prompt_reason.set(f"You were signed out: {user_message(NotSignedIn(credentials.last_rejection))}")
        show_dialog()

    @reactive.effect
    @reactive.event(input.sign_out)
    def _sign_out() -> None:
        credentials.token = None
        user.set(None)

    @reactive.effect
    @reactive.event(input.open_sign_in)
    def _open() -> None:
        prompt_reason.set("")
        show_dialog()

    @render.text
    def error() -> str:
        return error_text()

    @render.ui
    def who() -> TagChild:
        current = user()
        if current is None:
            return ui.input_action_button("open_sign_in", "Sign in", class_="btn-sm btn-primary")
        return ui.span(
            ui.span(f"{current.username} ({current.role})", id=session.ns("who_text"), class_="me-2 small"),
            ui.input_action_button("sign_out", "Sign out", class_="btn-sm btn-outline-secondary"),
        )

    @reactive.calc
    def current() -> SignedIn | None:
        return user()

    return Auth(user=current)
