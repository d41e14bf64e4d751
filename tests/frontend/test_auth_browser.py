"""Signing in to the app in Debian's Chromium, against a real backend (real users in nx-27017).

A viewer sees the fruits but the controls that change them are disabled, with the reason shown; an
editor may add; only an admin may update the model; a session whose token the backend stops
accepting is asked to sign in again and keeps what its page shows.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import grpc
import pytest
from fruitstack.v1 import fruits_pb2, fruits_pb2_grpc
from playwright.sync_api import Page, expect
from shiny.playwright import controller

from backend.auth.roles import Role
from tests.browser import expect_table_cell, fill_sign_in, sign_in
from tests.fixtures.backend import TEST_ADMIN
from tests.fixtures.frontend import FrontendStack
from tests.fixtures.model_service import ModelService

pytestmark = pytest.mark.browser


def new_user(stack: FrontendStack, role: Role) -> tuple[str, str]:
    username, password = f"{role.label}-{uuid.uuid4().hex[:6]}", "a-long-enough-password"
    stack.backend.create_user(username, password, role)
    return username, password


def add_fruit_elsewhere(stack: FrontendStack, name: str) -> None:
    with grpc.insecure_channel(stack.backend.target) as channel:
        fruits_pb2_grpc.FruitServiceStub(channel).AddFruit(
            fruits_pb2.AddFruitRequest(name=name), metadata=stack.backend.metadata(), timeout=10
        )


def predicted_by(page: Page) -> None:
    """Open the Predict tab and predict the form's defaults."""
    controller.PageNavbar(page, "tabs").set("predict")
    controller.InputSlider(page, "predict-feature_0").expect_label("sepal_length_cm")  # the form is up
    controller.InputTaskButton(page, "predict-predict").click()
    expect(page.locator("#predict-label_value")).to_have_text(re.compile(r"\w+"))


def test_a_viewer_reads_but_may_not_change_anything(
    shared_frontend: FrontendStack, app_page: Page, screenshot_dir: Path
) -> None:
    page = app_page
    username, password = new_user(shared_frontend, Role.VIEWER)
    fruit = f"viewer-sees-{uuid.uuid4().hex[:4]}"
    add_fruit_elsewhere(shared_frontend, fruit)
    page.goto(shared_frontend.url)
    # Before signing in, nothing that changes state is usable (a disabled fieldset disables its controls).
    fruit_name, add_reason = page.locator("#fruits-fruit_name"), page.locator("#fruits-add_gate-reason")
    expect(fruit_name).to_be_disabled()

    sign_in(page, username, password, expect_role="viewer")

    expect_table_cell(page, "fruits-table", fruit, row=0, col=0)
    expect(fruit_name).to_be_disabled()
    expect(page.locator("#fruits-add_gate button")).to_be_disabled()
    expect(add_reason).to_have_text(
        f"To add fruits you need to be an editor or admin; you are signed in as {username} (viewer)."
    )
    expect(page.locator("#fruits-delete")).to_be_disabled()
    expect(page.locator("#fruits-delete_gate-reason")).to_contain_text("To delete fruits you need to be")
    shot_path = screenshot_dir / "signed-in-viewer.png"
    page.screenshot(path=shot_path, full_page=True)

    controller.PageNavbar(page, "tabs").set("model")
    expect(page.locator("#model-update")).to_be_disabled()
    expect(page.locator("#model-update_gate-reason")).to_have_text(
        f"To update the model you need to be an admin; you are signed in as {username} (viewer)."
    )
    expect(page.locator("#model-rollback")).to_be_disabled()
    expect(page.locator("#model-rollback_gate-reason")).to_contain_text("To serve another version you need")
    expect(page.locator("#retraining-retrain")).to_be_disabled()
    expect(page.locator("#retraining-retrain_gate-reason")).to_contain_text("To start a retraining you need")

    # A viewer predicts, but may not say what the answer should have been (feedback is training data).
    predicted_by(page)
    expect(page.locator("#predict-send_feedback")).to_be_disabled()
    expect(page.locator("#predict-feedback_gate-reason")).to_have_text(
        f"To send feedback you need to be an editor or admin; you are signed in as {username} (viewer)."
    )

    # Signing out closes the gates with the other reason.
    controller.InputActionButton(page, "auth-sign_out").click()
    expect(add_reason).to_have_text("Sign in as an editor or admin to add fruits.")


def test_an_editor_adds_fruits_but_may_not_update_the_model(
    shared_frontend: FrontendStack, app_page: Page
) -> None:
    page = app_page
    username, password = new_user(shared_frontend, Role.EDITOR)
    page.goto(shared_frontend.url)
    sign_in(page, username, password, expect_role="editor")

    expect(page.locator("#fruits-fruit_name")).to_be_enabled()
    expect(page.locator("#fruits-add_gate-reason")).to_have_text("")
    name = f"editor-adds-{uuid.uuid4().hex[:4]}"
    controller.InputSubmitTextarea(page, "fruits-fruit_name").set(name, submit=True)
    controller.OutputText(page, "fruits-add_ok").expect_value(f"Added “{name}”.")
    expect_table_cell(page, "fruits-table", name, row=0, col=0)
    controller.PageNavbar(page, "tabs").set("model")
    expect(page.locator("#model-update")).to_be_disabled()
    expect(page.locator("#retraining-retrain")).to_be_disabled()
    predicted_by(page)
    expect(page.locator("#predict-send_feedback")).to_be_enabled()
    expect(page.locator("#predict-feedback_gate-reason")).to_have_text("")


def test_a_wrong_password_is_said_and_nothing_opens(shared_frontend: FrontendStack, app_page: Page) -> None:
    page = app_page
    page.goto(shared_frontend.url)
    fill_sign_in(page, TEST_ADMIN[0], "not-the-password")

    controller.OutputText(page, "auth-error").expect_value("Wrong username or password.")
    expect(page.locator("#fruits-fruit_name")).to_be_disabled()


def test_a_refused_token_asks_to_sign_in_again_and_keeps_the_page(
    private_frontend: tuple[FrontendStack, ModelService], app_page: Page, screenshot_dir: Path
) -> None:
    stack, _model = private_frontend
    page = app_page
    page.goto(stack.url)
    sign_in(page, *TEST_ADMIN)
    controller.InputSubmitTextarea(page, "fruits-fruit_name").set("persimmon", submit=True)
    expect_table_cell(page, "fruits-table", "persimmon", row=0, col=0)

    # A backend restarted with another signing key no longer accepts the session's token, as when
    # the token expires.
    stack.backend.process.stop()
    stack.backend.process.env["AUTH_TOKEN_SECRET"] = "another-signing-key-" + "x" * 32
    stack.backend.start()

    reason = page.locator("#auth-reason")
    expect(reason).to_contain_text("You were signed out: The access token is not valid")
    expect(reason).to_contain_text("Sign in again; the page keeps what it shows.")
    expect_table_cell(page, "fruits-table", "persimmon", row=0, col=0)  # still shown
    expect(page.locator("#auth-username")).to_be_focused()  # the dialog is fully shown
    page.screenshot(path=screenshot_dir / "sign-in-again.png", full_page=True)

    fill_sign_in(page, *TEST_ADMIN)
    expect(page.locator("#auth-who_text")).to_have_text("admin (admin)")
    controller.InputSubmitTextarea(page, "fruits-fruit_name").set("medlar", submit=True)
    expect_table_cell(page, "fruits-table", "medlar", row=0, col=0)
    expect_table_cell(page, "fruits-table", "persimmon", row=1, col=0)
