"""Users: anyone signed in changes their own password; an admin lists, creates, re-roles, disables,
enables and deletes users and resets their passwords.

The admin controls sit in a permission gate (frontend.modules.auth); the backend refuses the same
calls to anyone else (backend/auth/policy.py). Every action names its user in one field, so the
table and the actions stay simple; the table is read again after each action.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from shiny import Inputs, Outputs, Session, module, reactive, render, ui
from shiny.ui import TagChild

from frontend.client import ROLES, Credentials, FruitstackClient, SignedIn, UserAccount
from frontend.exceptions import user_message
from frontend.modules.auth import permission, permission_gate, update_gate

# The admin actions: button id -> what it does, in the words of the result line.
ACTIONS = {
    "create": "created",
    "set_role": "given the role",
    "disable": "disabled",
    "enable": "enabled",
    "delete": "deleted",
    "reset": "given a new password",
}


@module.ui
def users_ui() -> TagChild:
    return ui.layout_columns(
        ui.card(
            ui.card_header("My password"),
            ui.input_password("old_password", "Current password", width="100%"),
            ui.input_password("new_password", "New password (at least 12 characters)", width="100%"),
            ui.input_password("new_password_again", "New password again", width="100%"),
            ui.input_task_button("change_password", "Change my password", label_busy="Changing…"),
            ui.div(ui.output_text("password_result", inline=True), class_="small mt-2", role="status"),
        ),
        ui.card(
            ui.card_header("Users"),
            permission_gate(
                "admin_gate",
                ui.output_table("users"),
                ui.input_text("username", "Username", width="100%"),
                ui.input_select("role", "Role", choices=list(ROLES), selected="viewer"),
                ui.input_password("password", "Password (to create, or to reset)", width="100%"),
                ui.div(
                    ui.input_action_button("create", "Create", class_="btn-sm btn-primary me-1"),
                    ui.input_action_button("set_role", "Set role", class_="btn-sm me-1"),
                    ui.input_action_button("disable", "Disable", class_="btn-sm me-1"),
                    ui.input_action_button("enable", "Enable", class_="btn-sm me-1"),
                    ui.input_action_button("reset", "Reset password", class_="btn-sm me-1"),
                    ui.input_action_button("delete", "Delete", class_="btn-sm btn-outline-danger"),
                ),
                ui.div(ui.output_text("admin_result", inline=True), class_="small mt-2", role="status"),
            ),
        ),
        col_widths=(4, 8),
    )


@module.server
def users_server(
    input: Inputs,
    output: Outputs,
    session: Session,
    *,
    client: FruitstackClient,
    credentials: Credentials,
    user: Callable[[], SignedIn | None],
) -> None:
    password_message: reactive.Value[str] = reactive.value("")
    admin_message: reactive.Value[str] = reactive.value("")
    listed: reactive.Value[list[UserAccount]] = reactive.value([])

    def is_admin() -> bool:
        return permission(user(), role="admin", action="manage users")[0]

    @reactive.effect
    async def _gate() -> None:
        allowed, reason = permission(user(), role="admin", action="manage users")
        await update_gate(session, "admin_gate", allowed, reason)
        if allowed:
            load()

    @reactive.extended_task
    async def load_users() -> list[UserAccount]:
        return await client.list_users()

    def load() -> None:
        with reactive.isolate():
            load_users()

    @reactive.effect
    def _loaded() -> None:
        if load_users.status() == "success":
            listed.set(load_users.value())
        elif load_users.status() == "error":
            admin_message.set(user_message(load_users.error()))

    @render.table
    def users() -> pd.DataFrame:
        rows = [
            {
                "user": u.username,
                "role": u.role,
                "disabled": "yes" if u.disabled else "",
                "created": f"{u.created_at:%Y-%m-%d %H:%M}" if u.created_at else "",
            }
            for u in listed()
        ]
        return pd.DataFrame(rows, columns=["user", "role", "disabled", "created"])

    @ui.bind_task_button(button_id="change_password")
    @reactive.extended_task
    async def change(old: str, new: str) -> str:
        return await client.change_password(old_password=old, new_password=new)

    @reactive.effect
    @reactive.event(input.change_password)
    def _change() -> None:
        if input.new_password() != input.new_password_again():
            password_message.set("The two new passwords differ.")
            return
        password_message.set("")
        change(input.old_password(), input.new_password())

    @reactive.effect
    def _changed() -> None:
        status = change.status()
        with reactive.isolate():
            if status == "success":
                # The old token is revoked by the change: the session goes on with the new one.
                credentials.token = change.value()
                password_message.set("Your password is changed; your other sign-ins have ended.")
            elif status == "error":
                password_message.set(user_message(change.error()))

    @reactive.extended_task
    async def act(action: str, username: str, role: str, password: str) -> str:
        if action == "create":
            await client.create_user(username=username, password=password, role=role)
        elif action == "set_role":
            await client.set_user_role(username=username, role=role)
        elif action in ("disable", "enable"):
            await client.set_user_disabled(username=username, disabled=action == "disable")
        elif action == "delete":
            await client.delete_user(username=username)
        else:
            await client.reset_password(username=username, new_password=password)
        what = ACTIONS[action] + (f" {role}" if action == "set_role" else "")
        return f"{username.strip().lower()}: {what}."

    def on_action(action: str) -> None:
        @reactive.effect
        @reactive.event(input[action])
        def _run() -> None:
            if is_admin():
                admin_message.set("")
                act(action, input.username(), input.role(), input.password())

    for action in ACTIONS:
        on_action(action)

    @reactive.effect
    def _acted() -> None:
        status = act.status()
        with reactive.isolate():
            if status == "success":
                admin_message.set(act.value())
                load()
            elif status == "error":
                admin_message.set(user_message(act.error()))

    @render.text
    def password_result() -> str:
        return password_message()

    @render.text
    def admin_result() -> str:
        return admin_message()
