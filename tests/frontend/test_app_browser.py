"""The app in Debian's Chromium, against a real backend, real nx-27017 and a real `bentoml serve`.

Every id is a namespaced module id ("<module>-<input>") driven through shiny.playwright.controller.
Screenshots of the main screens go to .artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from fruitstack.v1 import fruits_pb2, fruits_pb2_grpc, predictions_pb2, predictions_pb2_grpc
from playwright.sync_api import Page, expect
from pymongo import MongoClient
from shiny.playwright import controller

from scripts.processes import NxServer
from tests.browser import expect_table_cell, sign_in
from tests.fixtures.backend import TEST_ADMIN, BackendProcess
from tests.fixtures.frontend import FrontendProcess, FrontendStack, frontend_stack
from tests.fixtures.model_service import ModelService

pytestmark = pytest.mark.browser


def model_features(stack: FrontendStack) -> list[predictions_pb2.Feature]:
    """The model's features as the backend describes them (to write CSVs the model accepts)."""
    with grpc.insecure_channel(stack.backend.target) as channel:
        response = predictions_pb2_grpc.PredictionServiceStub(channel).GetModel(
            predictions_pb2.GetModelRequest(), metadata=stack.backend.metadata(), timeout=30
        )
    return list(response.model.features)


def add_fruit_elsewhere(stack: FrontendStack, name: str) -> None:
    """Another client of the same backend (as another browser would be)."""
    with grpc.insecure_channel(stack.backend.target) as channel:
        fruits_pb2_grpc.FruitServiceStub(channel).AddFruit(
            fruits_pb2.AddFruitRequest(name=name), metadata=stack.backend.metadata(), timeout=10
        )


def open_tab(page: Page, value: str) -> None:
    controller.NavsetBar(page, "tabs").set(value)


def shot(page: Page, screenshot_dir: Path, name: str) -> None:
    page.screenshot(path=screenshot_dir / f"{name}.png", full_page=True)


def test_add_fruit_is_listed_and_counted(
    shared_frontend: FrontendStack, app_page: Page, screenshot_dir: Path
) -> None:
    page = app_page
    page.goto(shared_frontend.url)
    sign_in(page, *TEST_ADMIN)
    name = controller.InputSubmitTextarea(page, "fruits-fruit_name")
    table = controller.OutputDataFrame(page, "fruits-table")
    total = controller.OutputText(page, "fruits-total")

    # Enter submits ...
    name.set("mango")
    name.loc.press("Enter")
    controller.OutputText(page, "fruits-add_ok").expect_value("Added “mango”.")
    expect_table_cell(page, "fruits-table", "mango", row=0, col=0)
    # ... and so does the Add button; the newest is listed first.
    name.set("kiwi", submit=True)
    expect_table_cell(page, "fruits-table", "kiwi", row=0, col=0)
    expect_table_cell(page, "fruits-table", "mango", row=1, col=0)
    name.set("mango", submit=True)
    total.expect_value("3 fruits, 2 distinct")
    controller.OutputText(page, "fruits-page_info").expect_value("1-3 of 3")
    expect(controller.OutputPlot(page, "fruits-counts").loc.locator("img")).to_be_visible()
    # The input is cleared after a submit, ready for the next fruit.
    name.expect_value("")

    # A fruit added by another client appears without a reload (polling).
    add_fruit_elsewhere(shared_frontend, "papaya")
    expect_table_cell(page, "fruits-table", "papaya", row=0, col=0)
    total.expect_value("4 fruits, 3 distinct")

    # Pages of three (FRUITS_PAGE_SIZE in the fixture): the oldest fruit is on the second page.
    page_info = controller.OutputText(page, "fruits-page_info")
    page_info.expect_value("1-3 of 4")
    controller.InputActionButton(page, "fruits-next").click()
    page_info.expect_value("4 of 4")
    expect_table_cell(page, "fruits-table", "mango", row=0, col=0)
    table.expect_nrow(1)
    controller.InputActionButton(page, "fruits-prev").click()
    page_info.expect_value("1-3 of 4")
    expect_table_cell(page, "fruits-table", "papaya", row=0, col=0)

    # Delete the selected row.
    table.select_rows([0])
    controller.InputTaskButton(page, "fruits-delete").click()
    expect_table_cell(page, "fruits-table", "mango", row=0, col=0)
    total.expect_value("3 fruits, 2 distinct")
    shot(page, screenshot_dir, "fruits")


def test_invalid_name_shows_the_backends_message(shared_frontend: FrontendStack, app_page: Page) -> None:
    page = app_page
    page.goto(shared_frontend.url)
    sign_in(page, *TEST_ADMIN)
    name = controller.InputSubmitTextarea(page, "fruits-fruit_name")
    error = controller.OutputText(page, "fruits-add_error")

    name.set("x" * 65, submit=True)
    error.expect_value("Name is 65 characters long; at most 64 are allowed.")
    name.set("   ", submit=True)
    error.expect_value("Name must not be empty or only whitespace.")
    # A valid name clears the message.
    name.set("lime", submit=True)
    error.expect_value("")
    controller.OutputText(page, "fruits-add_ok").expect_value("Added “lime”.")


def test_predict_with_the_generated_form(
    shared_frontend: FrontendStack, model_service: ModelService, app_page: Page, screenshot_dir: Path
) -> None:
    page = app_page
    page.goto(shared_frontend.url)
    sign_in(page, *TEST_ADMIN)
    open_tab(page, "predict")
    features = model_features(shared_frontend)
    # One slider per feature, bounded by the training range.
    for i, feature in enumerate(features):
        slider = controller.InputSlider(page, f"predict-feature_{i}")
        slider.expect_label(feature.name)
        slider.expect_min(str(feature.min))
        slider.expect_max(str(feature.max))

    controller.InputTaskButton(page, "predict-predict").click()
    label = page.locator("#predict-label_value")
    expect(label).to_have_text(re.compile(r"^(setosa|versicolor|virginica)$"))
    expect(page.locator("#predict-version_value")).to_have_text(model_service.version)
    bars = controller.OutputUi(page, "predict-result").loc.locator(".probability")
    expect(bars).to_have_count(3)
    # The query point is drawn among the training sample; choosing another axis redraws it.
    plot = controller.OutputPlot(page, "predict-scatter").loc.locator("img")
    expect(plot).to_be_visible()
    before = plot.get_attribute("src")
    controller.InputSelect(page, "predict-y").set(features[2].name)
    expect(plot).not_to_have_attribute("src", before or "")
    shot(page, screenshot_dir, "predict")


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue())
    return path


def test_upload_csv_and_download_results(
    shared_frontend: FrontendStack, app_page: Page, screenshot_dir: Path, tmp_path: Path
) -> None:
    page = app_page
    page.goto(shared_frontend.url)
    sign_in(page, *TEST_ADMIN)
    open_tab(page, "bulk")
    features = model_features(shared_frontend)
    names = [f.name for f in features]
    upload = controller.InputFile(page, "bulk-upload")
    check = controller.OutputUi(page, "bulk-check")

    # A file with a missing column and a non-numeric cell is refused with rows and columns named.
    bad = _write_csv(
        tmp_path / "bad.csv", names[:-1], [["1"] * (len(names) - 1), ["abc"] + ["1"] * (len(names) - 2)]
    )
    upload.set(bad)
    expect(check.loc).to_contain_text(f"missing column '{names[-1]}'")
    bad_cell = _write_csv(
        tmp_path / "bad-cell.csv", names, [["1"] * len(names), ["oops"] + ["1"] * (len(names) - 1)]
    )
    upload.set(bad_cell)
    expect(check.loc).to_contain_text(f"column '{names[0]}' is not a finite number in rows 3")

    rng = random.Random(7)
    rows = [[f"{rng.uniform(f.min, f.max):.2f}" for f in features] for _ in range(300)]
    good = _write_csv(
        tmp_path / "flowers.csv", ["id", *names], [[str(i), *row] for i, row in enumerate(rows)]
    )
    upload.set(good)
    expect(check.loc).to_contain_text("300 rows ready to score")
    controller.InputTaskButton(page, "bulk-score").click()
    expect(page.locator("#bulk-summary_text")).to_contain_text("Scored 300 rows with model version")
    expect_table_cell(page, "bulk-results", "0", row=0, col=0)
    shot(page, screenshot_dir, "bulk")

    with page.expect_download() as download_info:
        controller.DownloadButton(page, "bulk-download").click()
    downloaded = Path(download_info.value.path())
    table = list(csv.DictReader(downloaded.read_text().splitlines()))
    assert len(table) == 300
    assert [r["id"] for r in table] == [str(i) for i in range(300)]  # order kept across chunks
    assert {r["predicted_label"] for r in table} <= {"setosa", "versicolor", "virginica"}
    for r in table:
        p = [float(r[f"probability_{c}"]) for c in ("setosa", "versicolor", "virginica")]
        assert sum(p) == pytest.approx(1.0, abs=1e-6)
        assert r["predicted_label"] == ("setosa", "versicolor", "virginica")[p.index(max(p))]


def test_update_model_shows_the_new_version(
    private_frontend: tuple[FrontendStack, ModelService], app_page: Page, screenshot_dir: Path
) -> None:
    stack, model = private_frontend
    page = app_page
    page.goto(stack.url)
    sign_in(page, *TEST_ADMIN)
    open_tab(page, "model")
    version = page.locator("#model-version_value")
    expect(version).to_have_text(model.version)

    # A model trained on another dataset: the UI needs no change to follow it.
    new_version = model.train(dataset="wine", seed=7)
    assert new_version != model.version
    controller.InputTaskButton(page, "model-update").click()
    controller.OutputText(page, "model-update_result").expect_value(
        f"Updated: {model.version} → {new_version}"
    )
    expect(version).to_have_text(new_version)
    shot(page, screenshot_dir, "model")

    open_tab(page, "predict")
    controller.InputSlider(page, "predict-feature_12").expect_label("proline")
    controller.InputTaskButton(page, "predict-predict").click()
    expect(page.locator("#predict-version_value")).to_have_text(new_version)


def test_model_service_outage_is_reported_while_fruits_keep_working(
    private_frontend: tuple[FrontendStack, ModelService], app_page: Page, screenshot_dir: Path
) -> None:
    stack, model = private_frontend
    page = app_page
    page.goto(stack.url)
    sign_in(page, *TEST_ADMIN)
    open_tab(page, "predict")
    controller.InputSlider(page, "predict-feature_0")  # the form is there while the model is up
    expect(page.locator("#predict-feature_0")).to_be_attached()

    model.stop()
    notice = controller.OutputUi(page, "predict-notice")
    expect(notice.loc).to_contain_text("The model service is unavailable right now")
    controller.InputTaskButton(page, "predict-predict").click()
    expect(controller.OutputUi(page, "predict-result").loc).to_contain_text("Prediction failed:")
    expect(page.locator("[data-service=model]")).to_have_attribute("data-state", "down")
    shot(page, screenshot_dir, "predict-model-down")

    open_tab(page, "fruits")
    name = controller.InputSubmitTextarea(page, "fruits-fruit_name")
    name.set("durian", submit=True)
    expect_table_cell(page, "fruits-table", "durian", row=0, col=0)
    expect(page.locator("[data-service=fruit-store]")).to_have_attribute("data-state", "up")

    # It recovers by itself when the model service is back.
    model.start()
    open_tab(page, "predict")
    expect(notice.loc).to_be_empty()
    controller.InputTaskButton(page, "predict-predict").click()
    expect(page.locator("#predict-version_value")).to_have_text(model.version)


@pytest.fixture
def frontend_without_model(backend_process: BackendProcess, tmp_path: Path) -> Iterator[FrontendProcess]:
    """A frontend in front of a `python -m backend` whose model service is missing (a closed port)."""
    frontend = FrontendProcess(backend_address=backend_process.target, log_dir=tmp_path).start()
    yield frontend
    frontend.stop()


def test_backend_outage_is_reported_and_recovers(
    backend_process: BackendProcess,
    frontend_without_model: FrontendProcess,
    app_page: Page,
    screenshot_dir: Path,
) -> None:
    page = app_page
    page.goto(frontend_without_model.url)
    sign_in(page, *TEST_ADMIN)
    name = controller.InputSubmitTextarea(page, "fruits-fruit_name")
    notice = controller.OutputUi(page, "fruits-notice")
    name.set("fig", submit=True)
    expect_table_cell(page, "fruits-table", "fig", row=0, col=0)
    # No model service behind this backend: the prediction panels say so, fruits work.
    expect(page.locator("[data-service=model]")).to_have_attribute("data-state", "down")

    backend_process.process.stop()
    expect(notice.loc).to_contain_text(f"The backend at {backend_process.target} cannot be reached")
    expect(page.locator("[data-service=backend]")).to_have_attribute("data-state", "down")
    name.set("date", submit=True)
    controller.OutputText(page, "fruits-add_error").expect_value(
        f"The backend at {backend_process.target} cannot be reached."
    )
    shot(page, screenshot_dir, "fruits-backend-down")

    backend_process.start()
    expect(notice.loc).to_be_empty()
    expect(page.locator("[data-service=backend]")).to_have_attribute("data-state", "up")
    name.set("date", submit=True)
    expect_table_cell(page, "fruits-table", "date", row=0, col=0)
    expect_table_cell(page, "fruits-table", "fig", row=1, col=0)


def test_mongodb_outage_is_reported_and_recovers(
    private_mongo: NxServer, mongodb_database: str, tmp_path: Path, app_page: Page
) -> None:
    backend = BackendProcess(
        mongodb_uri=private_mongo.uri, mongodb_database=mongodb_database, log_dir=tmp_path
    )
    backend.start()
    frontend = FrontendProcess(backend_address=backend.target, log_dir=tmp_path)
    try:
        frontend.start()
        page = app_page
        page.goto(frontend.url)
        sign_in(page, *TEST_ADMIN)
        name = controller.InputSubmitTextarea(page, "fruits-fruit_name")
        name.set("lychee", submit=True)
        expect_table_cell(page, "fruits-table", "lychee", row=0, col=0)

        private_mongo.stop()
        expect(controller.OutputUi(page, "fruits-notice").loc).to_contain_text(
            "The fruit store (MongoDB) is unavailable; could not list fruits"
        )
        expect(page.locator("[data-service=fruit-store]")).to_have_attribute("data-state", "down")
        expect(page.locator("[data-service=backend]")).to_have_attribute("data-state", "up")

        private_mongo.start()
        expect(controller.OutputUi(page, "fruits-notice").loc).to_be_empty()
        name.set("quince", submit=True)
        expect_table_cell(page, "fruits-table", "quince", row=0, col=0)
        expect_table_cell(page, "fruits-table", "lychee", row=1, col=0)
    finally:
        frontend.stop()
        backend.process.stop()


def test_rollback_from_the_model_tab_with_a_confirmation(
    private_frontend: tuple[FrontendStack, ModelService], app_page: Page, screenshot_dir: Path
) -> None:
    stack, model = private_frontend
    page = app_page
    old = model.version
    new = model.train(seed=7)  # promoted: the new champion
    weak = model.train(params=["C=0.0001"], promote=False)  # the gate keeps it out
    page.goto(stack.url)
    sign_in(page, *TEST_ADMIN)
    open_tab(page, "model")
    controller.InputTaskButton(page, "model-update").click()
    controller.OutputText(page, "model-update_result").expect_value(f"Updated: {old} → {new}")
    version = page.locator("#model-version_value")
    expect(version).to_have_text(new)

    table = page.locator("#model-versions-table")
    expect(table.locator(f"tr[data-version='{new}']")).to_contain_text("champion")
    expect(table.locator(f"tr[data-version='{weak}']")).to_contain_text("not promoted")
    link = table.locator(f"tr[data-version='{old}'] a")
    expect(link).to_have_attribute("href", re.compile(rf"/#/models/{model.registered_model}/versions/{old}$"))
    shot(page, screenshot_dir, "model-registry")

    controller.InputSelect(page, "model-rollback_version").set(old)
    controller.InputActionButton(page, "model-rollback").click()
    confirm = controller.InputActionButton(page, "model-confirm_rollback")
    expect(confirm.loc).to_have_text(f"Serve version {old}")
    confirm.click()
    controller.OutputText(page, "model-update_result").expect_value(f"Updated: {new} → {old}")
    expect(version).to_have_text(old)
    expect(table.locator(f"tr[data-version='{old}']")).to_contain_text("champion")
    assert model.champion() == old


def test_feedback_under_a_prediction_and_drift_in_the_monitoring_tab(
    mongodb_uri: str, model_service: ModelService, tmp_path: Path, app_page: Page, screenshot_dir: Path
) -> None:
    page = app_page
    with frontend_stack(mongodb_uri=mongodb_uri, model_url=model_service.url, log_dir=tmp_path) as stack:
        page.goto(stack.url)
        sign_in(page, *TEST_ADMIN)
        open_tab(page, "predict")
        controller.InputSlider(page, "predict-feature_0").expect_label("sepal_length_cm")  # the form is up
        controller.InputTaskButton(page, "predict-predict").click()
        label = page.locator("#predict-label_value")
        expect(label).to_have_text(re.compile(r"^(setosa|versicolor|virginica)$"))
        predicted = label.inner_text()
        truth = next(c for c in ("setosa", "versicolor", "virginica") if c != predicted)
        controller.InputRadioButtons(page, "predict-feedback_label").set(truth)
        controller.InputTaskButton(page, "predict-send_feedback").click()
        controller.OutputText(page, "predict-feedback_result").expect_value(
            f"Thank you: recorded {truth} (the model said {predicted}: wrong)."
        )
        shot(page, screenshot_dir, "predict-feedback")

        # Traffic with one feature shifted, through the command a person would run.
        subprocess.run(
            [
                sys.executable, "-m", "scripts.traffic",
                "--target", stack.backend.target,
                "--count", "600", "--rate", "0", "--concurrency", "1",
                "--shift", "petal_length_cm=2.5", "--username", TEST_ADMIN[0],
            ],
            env={**os.environ, "FRUITSTACK_PASSWORD": TEST_ADMIN[1]},
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        open_tab(page, "monitoring")
        # Longer petals also move the predictions towards virginica: the labels drift as well.
        verdict = page.locator("#monitoring-verdict")
        expect(verdict).to_have_text("Drift: petal_length_cm, predicted labels", timeout=60_000)
        drifting = page.locator("#drift-table tr[data-verdict='drift']:not([data-feature='labels'])")
        expect(drifting).to_have_count(1)
        expect(page.locator("#drift-table tr[data-feature='petal_length_cm']")).to_have_attribute(
            "data-verdict", "drift"
        )
        expect(page.locator("#drift-table tr[data-feature='sepal_width_cm']")).to_have_attribute(
            "data-verdict", "ok"
        )
        # One labelled prediction, and it was wrong.
        expect(page.locator("#monitoring-accuracy")).to_have_text("0.0%")
        expect(page.locator("#monitoring-dropped")).to_have_text("0")
        # The drifting feature is the one shown, training data against recent predictions.
        controller.InputSelect(page, "monitoring-feature").expect_selected("petal_length_cm")
        expect(controller.OutputPlot(page, "monitoring-distribution").loc.locator("img")).to_be_visible()
        shot(page, screenshot_dir, "monitoring")


def test_retraining_card_shows_recorded_runs_and_says_prefect_is_unavailable(
    shared_frontend: FrontendStack, app_page: Page, screenshot_dir: Path
) -> None:
    # What a run records at its end (pipelines/outcome.py); nothing answers at this backend's Prefect.
    backend = shared_frontend.backend
    finished = datetime.now(UTC) - timedelta(seconds=130)
    client: MongoClient[dict[str, Any]] = MongoClient(backend.mongodb_uri)
    with client:
        client[backend.mongodb_database]["retraining_runs"].insert_one(
            {
                "_id": "6f1c0d3a-0000-4000-8000-000000000002",
                "flow_run_name": "quiet-heron",
                "trigger": "schedule",
                "started_at": finished - timedelta(seconds=35),
                "finished_at": finished,
                "duration_s": 35.0,
                "result": "not promoted",
                "detail": "not promoted: f1_macro 0.9300 < champion v1 0.9500, margin 0 (minus the margin)",
                "metric": "f1_macro",
                "candidate_score": 0.93,
                "champion_score": 0.95,
                "candidate_version": "2",
                "data": {"feedback_train_rows": 20, "feedback_eval_rows": 8},
            }
        )
    page = app_page
    page.goto(shared_frontend.url)
    sign_in(page, *TEST_ADMIN)
    open_tab(page, "model")

    expect(page.locator("#retraining-last_retraining")).to_have_text(
        "Last retraining 2 min ago (schedule): not promoted, 0.93 < 0.95"
    )
    expect(page.locator("#retraining-notice")).to_contain_text("Predictions and fruits are not affected")
    expect(page.locator("#retraining-notice")).to_contain_text("is unavailable")
    expect(page.locator("#retraining-runs-table tr[data-state=Completed] td").nth(4)).to_have_text("28")

    controller.InputTaskButton(page, "retraining-retrain").click()
    result = controller.OutputText(page, "retraining-retrain_result")
    expect(result.loc).to_contain_text("Retraining not started: Prefect at http://127.0.0.1:")
    expect(result.loc).to_contain_text("is unavailable")
    shot(page, screenshot_dir, "retraining-prefect-down")
