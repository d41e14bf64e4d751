"""Fruits: add (button or Enter), the list newest first in pages, delete, and a bar chart of counts.

The list and the counts are re-read every poll interval, so fruits added in another browser appear
without a reload, and the panel recovers by itself after an outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from shiny import Inputs, Outputs, Session, module, reactive, render, req, ui
from shiny.ui import TagChild

from frontend.charts import counts_figure
from frontend.client import Fruit, FruitPage, FruitstackClient, FruitSummary, SignedIn
from frontend.exceptions import InvalidRequest, NotSignedIn, user_message
from frontend.modules.auth import permission, permission_gate, update_gate


def fruits_frame(fruits: tuple[Fruit, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Fruit": [f.name for f in fruits],
            "Added": [f.created_at.strftime("%Y-%m-%d %H:%M:%S UTC") if f.created_at else "" for f in fruits],
        }
    )


@module.ui
def fruits_ui() -> TagChild:
    add_button = ui.input_task_button("add", "Add", label_busy="Adding…", class_="btn-sm")
    return ui.layout_columns(
        ui.card(
            ui.card_header("Fruits"),
            # A submit textarea sends its value only when submitted (Add or Enter) and then clears.
            permission_gate(
                "add_gate",
                ui.input_submit_textarea(
                    "fruit_name",
                    "Add a fruit",
                    placeholder="e.g. apple, then Enter",
                    rows=1,
                    submit_key="enter",
                    button=add_button,
                    width="100%",
                    maxlength="200",
                ),
            ),
            # One line under the input for the outcome: the backend's message, or what was added.
            ui.div(
                ui.span(ui.output_text("add_error", inline=True), class_="text-danger", role="alert"),
                ui.span(ui.output_text("add_ok", inline=True), class_="text-success"),
                class_="small",
                style="min-height: 1.5em",
            ),
            ui.output_ui("notice"),
            ui.output_data_frame("table"),
            ui.card_footer(
                ui.div(
                    ui.input_action_button("prev", "Newer", class_="btn-sm btn-outline-secondary"),
                    ui.output_text("page_info", inline=True),
                    ui.input_action_button("next", "Older", class_="btn-sm btn-outline-secondary"),
                    ui.div(
                        permission_gate(
                            "delete_gate",
                            ui.input_task_button(
                                "delete",
                                "Delete selected",
                                label_busy="Deleting…",
                                type="danger",
                                class_="btn-sm",
                            ),
                        ),
                        class_="ms-auto text-end",
                    ),
                    class_="d-flex align-items-center gap-2",
                ),
            ),
        ),
        ui.card(
            ui.card_header("Counts per fruit"),
            ui.output_plot("counts", height="320px"),
            ui.div(ui.output_text("total"), class_="text-body-secondary small"),
        ),
        col_widths=(7, 5),
    )


@module.server
def fruits_server(
    input: Inputs,
    output: Outputs,
    session: Session,
    *,
    client: FruitstackClient,
    user: Callable[[], SignedIn | None],
    page_size: int,
    poll_interval_s: float,
) -> None:
    @reactive.effect
    async def _gates() -> None:
        current = user()
        for gate_id, action in (("add_gate", "add fruits"), ("delete_gate", "delete fruits")):
            allowed, reason = permission(current, role="editor", action=action)
            await update_gate(session, gate_id, allowed, reason)

    # Page tokens of the pages above the current one; the last is the current page's token.
    tokens: reactive.Value[tuple[str, ...]] = reactive.value(("",))
    page: reactive.Value[FruitPage | None] = reactive.value(None)
    summary: reactive.Value[FruitSummary | None] = reactive.value(None)
    load_error: reactive.Value[str | None] = reactive.value(None)
    error_text: reactive.Value[str] = reactive.value("")
    ok_text: reactive.Value[str] = reactive.value("")
    reload = reactive.value(0)

    @reactive.extended_task
    async def load(page_token: str) -> tuple[FruitPage, FruitSummary]:
        listing, totals = await asyncio.gather(
            client.list_fruits(page_size=page_size, page_token=page_token), client.summarize_fruits()
        )
        return listing, totals

    @reactive.effect
    def _poll() -> None:
        reactive.invalidate_later(poll_interval_s)
        with reactive.isolate():
            if load.status() != "running":
                load(tokens()[-1])

    @reactive.effect
    @reactive.event(tokens, reload, ignore_init=True)
    def _reload_now() -> None:
        # An explicit change (paging, add, delete) queues behind a running poll rather than waiting a tick.
        load(tokens()[-1])

    @reactive.effect
    def _loaded() -> None:
        status = load.status()
        if status == "error":
            exc = load.error()
            with reactive.isolate():
                if isinstance(exc, InvalidRequest) and len(tokens()) > 1:
                    tokens.set(("",))  # a stale page token: start again from the newest fruits
            # Not signed in (yet, or any more): the sign-in dialog says what to do; keep this short.
            load_error.set(
                "Sign in to see the fruits." if isinstance(exc, NotSignedIn) else user_message(exc)
            )
            return
        if status != "success":
            return
        listing, totals = load.value()
        load_error.set(None)
        # Only changed data re-renders, so polling keeps the user's row selection.
        with reactive.isolate():
            if listing != page():
                page.set(listing)
            if totals != summary():
                summary.set(totals)

    @ui.bind_task_button(button_id="add")
    @reactive.extended_task
    async def add(name: str) -> Fruit:
        return await client.add_fruit(name=name)

    @reactive.effect
    @reactive.event(input.fruit_name)
    def _submit() -> None:
        error_text.set("")
        ok_text.set("")
        add(input.fruit_name())

    @reactive.effect
    def _added() -> None:
        status = add.status()
        with reactive.isolate():
            if status == "success":
                error_text.set("")
                ok_text.set(f"Added “{add.value().name}”.")
                tokens.set(("",))  # back to the newest page, where the new fruit is
                reload.set(reload() + 1)
            elif status == "error":
                ok_text.set("")
                error_text.set(user_message(add.error()))

    @render.text
    def add_error() -> str:
        return error_text()

    @render.text
    def add_ok() -> str:
        return ok_text()

    @render.ui
    def notice() -> TagChild:
        message = load_error()
        if message is None:
            return None
        return ui.div(
            f"The fruit list cannot be loaded right now: {message} It refreshes by itself.",
            class_="alert alert-warning py-2 mb-2",
            role="status",
        )

    @render.data_frame
    def table() -> render.DataGrid[Any]:
        listing = page()
        req(listing is not None)
        assert listing is not None
        return render.DataGrid(
            fruits_frame(listing.fruits), selection_mode="rows", width="100%", summary=False
        )

    @render.text
    def page_info() -> str:
        listing = page()
        if listing is None:
            return ""
        first = (len(tokens()) - 1) * page_size
        if not listing.fruits:
            return "no fruits yet" if first == 0 else "no more fruits"
        last = first + len(listing.fruits)
        shown = f"{last}" if last == first + 1 else f"{first + 1}-{last}"
        return f"{shown} of {listing.total_size}"

    @reactive.effect
    def _pager_buttons() -> None:
        listing = page()
        ui.update_action_button("prev", disabled=len(tokens()) <= 1)
        ui.update_action_button("next", disabled=listing is None or not listing.next_page_token)

    @reactive.effect
    @reactive.event(input.next)
    def _next() -> None:
        listing = page()
        if listing is not None and listing.next_page_token:
            tokens.set((*tokens(), listing.next_page_token))

    @reactive.effect
    @reactive.event(input.prev)
    def _prev() -> None:
        if len(tokens()) > 1:
            tokens.set(tokens()[:-1])

    @ui.bind_task_button(button_id="delete")
    @reactive.extended_task
    async def delete(fruit_ids: tuple[str, ...]) -> int:
        for fruit_id in fruit_ids:
            await client.delete_fruit(fruit_id=fruit_id)
        return len(fruit_ids)

    @reactive.effect
    @reactive.event(input.delete)
    def _delete() -> None:
        listing = page()
        rows = table.cell_selection()["rows"] if listing is not None else ()
        if listing is None or not rows:
            ui.notification_show("Select one or more fruits in the list first.", type="message", duration=4)
            return
        delete(tuple(listing.fruits[i].id for i in rows if i < len(listing.fruits)))

    @reactive.effect
    def _deleted() -> None:
        status = delete.status()
        with reactive.isolate():
            if status == "success":
                n = delete.value()
                ui.notification_show(f"Deleted {n} fruit{'s' if n != 1 else ''}.", duration=3)
                reload.set(reload() + 1)
            elif status == "error":
                ui.notification_show(
                    f"Delete failed: {user_message(delete.error())}", type="error", duration=8
                )
                reload.set(reload() + 1)

    @render.plot(alt="Bar chart of the number of fruits per name")
    def counts() -> Figure:
        current = summary()
        req(current is not None)
        assert current is not None
        return counts_figure(current.counts)

    @render.text
    def total() -> str:
        current = summary()
        if current is None:
            return ""
        return f"{current.total} fruit{'s' if current.total != 1 else ''}, {len(current.counts)} distinct"
