"""frontend.bulk_csv: CSV checks name the bad rows and columns; chunks and results keep row order."""

from __future__ import annotations

import pandas as pd
import pytest

from frontend.bulk_csv import (
    LABEL_COLUMN,
    PROBABILITY_PREFIX,
    BulkResults,
    CsvProblem,
    column_chunks,
    read_feature_csv,
)
from frontend.client import BulkChunk

FEATURES = ("sepal length (cm)", "petal width (cm)")


def csv(text: str) -> bytes:
    return text.strip().encode() + b"\n"


def test_reads_feature_columns_in_model_order_and_keeps_other_columns() -> None:
    table = read_feature_csv(
        csv('id,"petal width (cm)","sepal length (cm)"\na,0.2,5.1\nb,1.5, 6.3'), FEATURES
    )
    assert table.n_rows == 2
    assert list(table.features.columns) == list(FEATURES)
    assert table.features.to_numpy().tolist() == [[5.1, 0.2], [6.3, 1.5]]
    assert list(table.original.columns) == ["id", "petal width (cm)", "sepal length (cm)"]


def test_missing_columns_are_named() -> None:
    with pytest.raises(CsvProblem, match=r"missing column 'petal width \(cm\)'; the model needs: sepal"):
        read_feature_csv(csv('"sepal length (cm)",x\n1,2'), FEATURES)


def test_non_numeric_and_empty_cells_name_rows_and_columns() -> None:
    data = csv('"sepal length (cm)","petal width (cm)"\n5.1,0.2\nabc,0.3\n4.9,\n5.0,inf')
    with pytest.raises(CsvProblem) as caught:
        read_feature_csv(data, FEATURES)
    message = str(caught.value)
    # Spreadsheet row numbers: the header is row 1.
    assert "column 'sepal length (cm)' is not a finite number in rows 3" in message
    assert "column 'petal width (cm)' is empty in rows 4" in message
    assert "column 'petal width (cm)' is not a finite number in rows 5" in message
    assert "row 1 is the header" in message


def test_long_lists_of_rows_are_cut_short() -> None:
    rows = "\n".join(["x,1"] * 25)
    with pytest.raises(CsvProblem, match=r"rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 15 more"):
        read_feature_csv(csv(f'"sepal length (cm)","petal width (cm)"\n{rows}'), FEATURES)


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", "the file is empty"), (csv('"sepal length (cm)","petal width (cm)"'), "no rows to score")],
)
def test_empty_files_are_refused(data: bytes, expected: str) -> None:
    with pytest.raises(CsvProblem, match=expected):
        read_feature_csv(data, FEATURES)


def test_chunks_cover_every_row_once_in_order() -> None:
    lines = "\n".join(f"{i},{i / 10}" for i in range(7))
    table = read_feature_csv(csv(f'"sepal length (cm)","petal width (cm)"\n{lines}'), FEATURES)
    chunks = list(column_chunks(table, 3))
    assert [len(c["sepal length (cm)"]) for c in chunks] == [3, 3, 1]
    assert [v for c in chunks for v in c["sepal length (cm)"]] == [float(i) for i in range(7)]


def _chunk(offset: int, labels: list[str], p_a: list[float]) -> BulkChunk:
    return BulkChunk(
        model_version="v1",
        row_offset=offset,
        classes=("a", "b"),
        labels=tuple(labels),
        probabilities={"a": p_a, "b": [1 - p for p in p_a]},
    )


def test_results_append_label_and_probability_columns() -> None:
    table = read_feature_csv(
        csv('"sepal length (cm)","petal width (cm)",label\n1,2,x\n3,4,y\n5,6,z'), FEATURES
    )
    results = BulkResults(n_rows=3)
    results.add(_chunk(0, ["a", "b"], [0.9, 0.2]))
    results.add(_chunk(2, ["a"], [0.6]))
    frame = results.to_frame(table)
    assert frame["label"].tolist() == ["x", "y", "z"]  # the upload's own columns are kept as they were
    assert frame[LABEL_COLUMN].tolist() == ["a", "b", "a"]
    assert frame[f"{PROBABILITY_PREFIX}a"].tolist() == pytest.approx([0.9, 0.2, 0.6])
    assert frame[f"{PROBABILITY_PREFIX}b"].tolist() == pytest.approx([0.1, 0.8, 0.4])
    assert results.model_version == "v1"
    assert isinstance(frame, pd.DataFrame)


def test_results_refuse_chunks_out_of_order_or_incomplete() -> None:
    results = BulkResults(n_rows=3)
    with pytest.raises(ValueError, match="expected 0"):
        results.add(_chunk(1, ["a"], [0.5]))
    results.add(_chunk(0, ["a"], [0.5]))
    table = read_feature_csv(csv('"sepal length (cm)","petal width (cm)"\n1,2\n3,4\n5,6'), FEATURES)
    with pytest.raises(ValueError, match="only 1 of 3 rows"):
        results.to_frame(table)
