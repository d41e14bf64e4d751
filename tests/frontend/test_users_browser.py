"""The Users tab in Debian's Chromium against a real backend (real users in nx-27017): an admin
creates and disables a user; anyone signed in changes their own password and stays signed in."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect
from shiny.playwright import controller

from backend.auth.roles import Role
from tests.browser import sign_in
from tests.fixtures.backend import TEST_ADMIN
from tests.fixtures.frontend import FrontendStack

pytestmark = pytest.mark.browser


def test_an_admin_creates_and_disables_a_user(shared_frontend: FrontendStack, app_page: Page) -> None:
    page = app_page
    name = f"new-{uuid.uuid4().hex[:6]}"
    page.goto(shared_frontend.url)
    sign_in(page, *TEST_ADMIN)
    controller.PageNavbar(page, "tabs").set("users")
    expect(page.locator("#users-create")).to_be_enabled()
    controller.InputText(page, "users-username").set(name)
    controller.InputPassword(page, "users-password").set("a-long-enough-password")
    controller.InputSelect(page, "users-role").set("editor")
    page.locator("#users-create").click()
    expect(page.locator("#users-admin_result")).to_have_text(f"{name}: created.")
    expect(page.locator("#users-users")).to_contain_text(name)

    page.locator("#users-disable").click()
    expect(page.locator("#users-admin_result")).to_have_text(f"{name}: disabled.")
    expect(page.locator("#users-users tr", has_text=name)).to_contain_text("yes")


def test_a_viewer_changes_their_password_and_stays_signed_in(
    shared_frontend: FrontendStack, app_page: Page
) -> None:
    page = app_page
    name, password = f"viewer-{uuid.uuid4().hex[:6]}", "a-long-enough-password"
    shared_frontend.backend.create_user(name, password, Role.VIEWER)
    page.goto(shared_frontend.url)
    sign_in(page, name, password, expect_role="viewer")
    controller.PageNavbar(page, "tabs").set("users")
    expect(page.locator("#users-create")).to_be_disabled()  # not an admin
    expect(page.locator("#users-admin_gate-reason")).to_contain_text(
        "To manage users you need to be an admin"
    )

    result = page.locator("#users-password_result")
    for old, new in [(password, "another-long-password"), ("another-long-password", "a-third-long-password")]:
        controller.InputPassword(page, "users-old_password").set(old)
        controller.InputPassword(page, "users-new_password").set(new)
        controller.InputPassword(page, "users-new_password_again").set(new)
        controller.InputTaskButton(page, "users-change_password").click()
        # The second change goes out with the token the first one answered (the first one revoked
        # the sign-in's token): it succeeds only if the session carried on with the new token.
        expect(result).to_have_text("Your password is changed; your other sign-ins have ended.")
        expect(page.locator(".modal-dialog")).to_have_count(0)
        result.evaluate("node => { node.textContent = '' }")
    expect(page.locator("#auth-who_text")).to_have_text(f"{name} (viewer)")
