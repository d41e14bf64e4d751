"""Helpers for the browser tests (the app's pages driven through Shiny's Playwright controllers)."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from shiny.playwright import controller


def expect_table_cell(
    page: Page, table_id: str, value: str, *, row: int, col: int, timeout: float = 30_000
) -> None:
    """The data frame `table_id` shows `value` at (row, col), waiting through re-renders.

    Not `OutputDataFrame.expect_cell`: before it waits, it scrolls the first row into view through an
    element handle, and a re-render that lands meanwhile (the fruits list polls) detaches that row and
    fails the test outright. Our tables are paged, so every row is already on screen; a plain locator
    assertion re-resolves the cell until it matches.
    """
    expect(controller.OutputDataFrame(page, table_id).cell_locator(row, col)).to_have_text(
        value, timeout=timeout
    )


def sign_in(page: Page, username: str, password: str, *, expect_role: str | None = None) -> None:
    """Sign in through the app's sign-in page (all a fresh page shows) and wait until done."""
    form = page.locator("#auth-form")
    expect(form).to_be_visible()
    fill_sign_in(page, username, password)
    expect(page.locator("#auth-who_text")).to_have_text(f"{username} ({expect_role or 'admin'})")
    expect(form).to_have_count(0)


def fill_sign_in(page: Page, username: str, password: str) -> None:
    """Type into the sign-in form and press its button."""
    # The server renders the form; typing before Shiny has bound its inputs loses the keys. (Not the
    # focus the app gives the first field: a page of a busy headless browser may not have focus.)
    expect(page.locator("#auth-username.shiny-bound-input")).to_be_visible()
    expect(page.locator("#auth-sign_in.shiny-bound-input")).to_be_visible()
    controller.InputText(page, "auth-username").set(username)
    controller.InputPassword(page, "auth-password").set(password)
    controller.InputTaskButton(page, "auth-sign_in").click()
