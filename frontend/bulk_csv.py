"""Bulk scoring without Shiny: read and check an uploaded CSV, cut it into chunks, collect the scores."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from frontend.client import BulkChunk

# How many row numbers one message lists before it says "and N more".
MAX_ROWS_LISTED = 10
LABEL_COLUMN = "predicted_label"
PROBABILITY_PREFIX = "probability_"


class CsvProblem(ValueError):
    """The CSV cannot be scored; the message says which rows and columns are wrong."""


@dataclass(frozen=True)
class FeatureTable:
    """An uploaded table whose feature columns are all finite numbers."""

    original: pd.DataFrame
    features: pd.DataFrame  # float64, exactly the model's feature columns in the model's order

    @property
    def n_rows(self) -> int:
        return len(self.features)


def _rows_text(positions: Sequence[int]) -> str:
    # Spreadsheet numbering: the header is row 1, so the first data row is row 2.
    shown = ", ".join(str(p + 2) for p in positions[:MAX_ROWS_LISTED])
    more = len(positions) - MAX_ROWS_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def read_feature_csv(source: str | Path | bytes, features: Sequence[str]) -> FeatureTable:
    """Parse a CSV and check that every feature column is present and numeric in every row.

    Raises CsvProblem naming the missing columns, or each bad column with its bad rows (row numbers
    as a spreadsheet shows them: the header is row 1).
    """
    buffer = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        # Everything as text first, so that "abc" in a numeric column is reported, not guessed at.
        frame = pd.read_csv(buffer, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise CsvProblem(
            "the file is empty; expected a header row with the columns " + ", ".join(features)
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CsvProblem(f"the file is not a readable CSV: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]

    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise CsvProblem(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}; "
            f"the model needs: {', '.join(features)}"
        )
    if frame.empty:
        raise CsvProblem("the file has a header but no rows to score")

    problems: list[str] = []
    numeric: dict[str, np.ndarray] = {}
    for name in features:
        text = frame[name].str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        empty = np.flatnonzero((text == "").to_numpy())
        bad = np.flatnonzero(~np.isfinite(values) & (text != "").to_numpy())
        if len(empty):
            problems.append(f"column {name!r} is empty in rows {_rows_text(empty.tolist())}")
        if len(bad):
            problems.append(f"column {name!r} is not a finite number in rows {_rows_text(bad.tolist())}")
        numeric[name] = values
    if problems:
        raise CsvProblem("; ".join(problems) + " (row 1 is the header)")
    return FeatureTable(original=frame, features=pd.DataFrame(numeric, columns=list(features)))


def column_chunks(table: FeatureTable, chunk_rows: int) -> Iterator[dict[str, list[float]]]:
    """The feature columns in chunks of at most chunk_rows rows (the columnar form PredictBatch takes)."""
    for start in range(0, table.n_rows, chunk_rows):
        part = table.features.iloc[start : start + chunk_rows]
        yield {name: part[name].tolist() for name in part.columns}


@dataclass
class BulkResults:
    """Collects the scored chunks of one stream, checking they arrive whole and in order."""

    n_rows: int
    model_version: str = ""
    classes: tuple[str, ...] = ()
    labels: list[str] = field(default_factory=list)
    probabilities: dict[str, list[float]] = field(default_factory=dict)

    @property
    def scored(self) -> int:
        return len(self.labels)

    def add(self, chunk: BulkChunk) -> None:
        if chunk.row_offset != self.scored:
            raise ValueError(f"the backend answered rows from {chunk.row_offset}, expected {self.scored}")
        if not self.classes:
            self.classes = chunk.classes
            self.probabilities = {c: [] for c in chunk.classes}
        elif chunk.classes != self.classes:
            raise ValueError("the model changed while the file was being scored; score it again")
        self.model_version = chunk.model_version
        self.labels.extend(chunk.labels)
        for name in self.classes:
            self.probabilities[name].extend(chunk.probabilities.get(name, []))

    def to_frame(self, table: FeatureTable) -> pd.DataFrame:
        """The uploaded table with a label column and one probability column per class appended."""
        if self.scored != table.n_rows:
            raise ValueError(f"only {self.scored} of {table.n_rows} rows were scored")
        out = table.original.copy()
        out[LABEL_COLUMN] = self.labels
        for name in self.classes:
            out[f"{PROBABILITY_PREFIX}{name}"] = self.probabilities[name]
        return out
