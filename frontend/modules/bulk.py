"""Bulk scoring: upload a CSV, stream it through PredictBatch in chunks, show and download the results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from shiny import Inputs, Outputs, Session, module, reactive, render, req, ui
from shiny.types import FileInfo
from shiny.ui import TagChild

from frontend.bulk_csv import BulkResults, CsvProblem, FeatureTable, column_chunks, read_feature_csv
from frontend.client import FruitstackClient, Health, ModelInfo
from frontend.exceptions import user_message
from frontend.middleware import size_text, too_large_message
from frontend.modules.status import outage_notice

# The browser table shows this many rows; the download always has all of them.
PREVIEW_ROWS = 1000


@dataclass(frozen=True)
class Scored:
    table: pd.DataFrame
    model_version: str
    file_name: str


@module.ui
def bulk_ui(*, max_upload_bytes: int) -> TagChild:
    return ui.layout_columns(
        ui.card(
            ui.card_header("Score a CSV file"),
            ui.output_ui("notice"),
            ui.input_file("upload", "CSV with one column per model feature", accept=[".csv", "text/csv"]),
            ui.p(f"At most {size_text(max_upload_bytes)}.", class_="form-text small mt-n2"),
            ui.output_ui("check"),
            ui.input_task_button("score", "Score file", label_busy="Scoring…"),
        ),
        ui.card(
            ui.card_header("Results"),
            ui.output_ui("summary"),
            ui.output_data_frame("results"),
        ),
        col_widths=(4, 8),
    )


@module.server
def bulk_server(
    input: Inputs,
    output: Outputs,
    session: Session,
    *,
    client: FruitstackClient,
    model: Callable[[], ModelInfo | None],
    health: Callable[[], Health | None],
    chunk_rows: int,
    max_upload_bytes: int,
) -> None:
    @reactive.calc
    def upload() -> FileInfo:
        files: list[FileInfo] | None = input.upload()
        req(files)
        assert files is not None
        return files[0]

    @reactive.calc
    def parsed() -> FeatureTable | CsvProblem:
        file = upload()
        info = model()
        req(info is not None)
        assert info is not None
        # The middleware refuses a larger upload before it is stored (frontend/middleware.py); this
        # is the same limit checked again, on the stored file, before pandas reads it into memory.
        if Path(file["datapath"]).stat().st_size > max_upload_bytes:
            return CsvProblem(too_large_message(max_upload_bytes))
        try:
            return read_feature_csv(file["datapath"], info.feature_names)
        except CsvProblem as problem:
            return problem

    @render.ui
    def check() -> TagChild:
        if model() is None:
            return ui.p("Waiting for the model description…", class_="text-body-secondary small")
        result = parsed()
        if isinstance(result, CsvProblem):
            return ui.div(
                f"This file cannot be scored: {result}", class_="alert alert-danger py-2", role="alert"
            )
        return ui.p(
            f"{result.n_rows:,} rows ready to score.",
            class_="text-success small",
            id=session.ns("ready_text"),
        )

    @ui.bind_task_button(button_id="score")
    @reactive.extended_task
    async def score(table: FeatureTable, file_name: str) -> Scored:
        results = BulkResults(n_rows=table.n_rows)

        async def chunks() -> AsyncIterator[dict[str, list[float]]]:
            for chunk in column_chunks(table, chunk_rows):
                yield chunk

        # Progress messages go straight to the browser, so they show while this task runs.
        with ui.Progress(min=0, max=max(table.n_rows, 1), session=session) as progress:
            progress.set(0, message="Scoring", detail=f"0 of {table.n_rows:,} rows")
            async for chunk in client.predict_bulk(chunks()):
                results.add(chunk)
                progress.set(
                    results.scored, message="Scoring", detail=f"{results.scored:,} of {table.n_rows:,} rows"
                )
        return Scored(table=results.to_frame(table), model_version=results.model_version, file_name=file_name)

    @reactive.effect
    @reactive.event(input.score)
    def _score() -> None:
        result = parsed()
        if isinstance(result, CsvProblem):
            ui.notification_show("Fix the file first: " + str(result), type="error", duration=8)
            return
        score(result, upload()["name"])

    @render.ui
    def notice() -> TagChild:
        return outage_notice(health(), needs_model=True)

    @render.ui
    def summary() -> TagChild:
        status = score.status()
        if status == "initial":
            return ui.p("Upload a CSV and press Score file.", class_="text-body-secondary")
        if status == "error":
            return ui.div(f"Scoring failed: {user_message(score.error())}", class_="alert alert-danger py-2")
        scored = score.result()
        shown = min(len(scored.table), PREVIEW_ROWS)
        return ui.div(
            ui.span(
                f"Scored {len(scored.table):,} rows with model version {scored.model_version}"
                + (f" (showing the first {shown:,})." if shown < len(scored.table) else "."),
                id=session.ns("summary_text"),
            ),
            ui.download_button("download", "Download CSV", class_="btn-sm btn-outline-primary ms-auto"),
            class_="d-flex align-items-center gap-2 mb-2",
        )

    @render.data_frame
    def results() -> render.DataGrid[Any]:
        scored = score.result()
        # Rounded for reading; the download keeps full precision.
        return render.DataGrid(scored.table.head(PREVIEW_ROWS).round(4), width="100%", height="420px")

    @render.download_button(filename=lambda: f"predictions-{score.result().file_name}", media_type="text/csv")
    def download() -> Iterator[str]:
        yield score.result().table.to_csv(index=False)
