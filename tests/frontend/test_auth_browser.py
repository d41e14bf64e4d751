"""Signing in to the app in Debian's Chromium, against a real backend (real users in nx-27017).

Nothing but the sign-in form shows until a user signs in, nor after signing out; every tab works
under the Content-Security-Policy with no violation; a fruit name that looks like mathtext does not
break the chart; an oversized upload is refused with a message. A viewer sees the fruits but the
controls that change them are disabled, with the reason shown; an editor may add; only an admin
may update the model; a session whose token the backend stops accepting ends, and the fresh
sign-in page says why.
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
from tests.fixtures.frontend import MAX_UPLOAD_BYTES, FrontendStack
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
    controller.NavsetBar(page, "tabs").set("predict")
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
    fruit_name, add_reason = page.locator("#fruits-fruit_name"), page.locator("#fruits-add_gate-reason")
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

    controller.NavsetBar(page, "tabs").set("model")
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

    # Signing out leaves nothing but the sign-in page.
    controller.InputActionButton(page, "auth-sign_out").click()
    expect(page.locator("#auth-reason")).to_have_text("You signed out.")
    expect(fruit_name).to_have_count(0)
    expect(add_reason).to_have_count(0)


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
    controller.NavsetBar(page, "tabs").set("model")
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
    expect(page.locator("#fruits-fruit_name")).to_have_count(0)
    expect(page.locator("#auth-form")).to_be_visible()


def test_a_refused_token_ends_the_page_and_the_sign_in_page_says_why(
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

    expect(page.locator("#auth-reason")).to_contain_text(
        "You were signed out: the backend no longer accepts your sign-in"
    )
    expect(page.locator("#fruits-table")).to_have_count(0)
    assert "persimmon" not in page.content()  # the ended page's data went with it
    expect(page.locator("#auth-username")).to_be_focused()
    page.screenshot(path=screenshot_dir / "sign-in-again.png", full_page=True)

    fill_sign_in(page, *TEST_ADMIN)
    expect(page.locator("#auth-who_text")).to_have_text("admin (admin)")
    controller.InputSubmitTextarea(page, "fruits-fruit_name").set("medlar", submit=True)
    expect_table_cell(page, "fruits-table", "medlar", row=0, col=0)
    expect_table_cell(page, "fruits-table", "persimmon", row=1, col=0)


# Collects Content-Security-Policy violations in the page (the console also reports them, but the
# event says which directive refused what).
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.cspViolations.push(e.violatedDirective + " refused " + (e.blockedURI || "inline") + " at "
    + e.sourceFile + ":" + e.lineNumber);
});
"""


def test_nothing_shows_before_sign_in_and_every_tab_works_under_the_policy(
    shared_frontend: FrontendStack, app_page: Page, tmp_path: Path, screenshot_dir: Path
) -> None:
    page = app_page
    page.add_init_script(CSP_WATCH)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    secret = f"secret-{uuid.uuid4().hex[:6]}"
    add_fruit_elsewhere(shared_frontend, secret)
    # Drawn as mathtext, this name made the counts chart fail for everyone.
    add_fruit_elsewhere(shared_frontend, r"$\notacommand$")

    response = page.goto(shared_frontend.url)
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    expect(page.locator("#auth-username")).to_be_focused()
    # The sign-in form and nothing else: no tabs, no status, no file input, no data.
    expect(page.locator("#tabs")).to_have_count(0)
    expect(page.locator("input[type=file]")).to_have_count(0)
    expect(page.locator("[data-service]")).to_have_count(0)
    assert secret not in page.content()
    page.screenshot(path=screenshot_dir / "sign-in.png", full_page=True)

    sign_in(page, *TEST_ADMIN)
    expect_table_cell(page, "fruits-table", r"$\notacommand$", row=0, col=0)
    counts = controller.OutputPlot(page, "fruits-counts").loc
    expect(counts.locator("img")).to_be_visible()
    expect(counts).not_to_have_class(re.compile("shiny-output-error"))
    tabs = controller.NavsetBar(page, "tabs")
    tabs.set("predict")
    predicted_by(page)
    expect(controller.OutputPlot(page, "predict-scatter").loc.locator("img")).to_be_visible()

    tabs.set("bulk")
    big = tmp_path / "big.csv"
    big.write_text("a,b\n" + "1.0,2.0\n" * (MAX_UPLOAD_BYTES // 8 + 1))
    controller.InputFile(page, "bulk-upload").set(big)
    expect(page.locator("#bulk-upload_progress")).to_contain_text(
        "This file is larger than 100 kB, the most this app accepts for scoring."
    )
    tabs.set("model")
    expect(page.locator("#model-version_value")).to_have_text(re.compile(r"\w+"))
    tabs.set("monitoring")
    expect(page.locator("#monitoring-verdict")).to_be_visible()
    expect(controller.OutputPlot(page, "monitoring-counts_plot").loc.locator("img")).to_be_visible()

    controller.InputActionButton(page, "auth-sign_out").click()
    expect(page.locator("#auth-reason")).to_have_text("You signed out.")
    expect(page.locator("#tabs")).to_have_count(0)
    assert secret not in page.content()
    violations = page.evaluate("window.cspViolations")
    assert violations == [], violations
    assert [e for e in console_errors if "Content Security Policy" in e] == []
