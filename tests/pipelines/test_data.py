"""The training data of a retraining: feedback rows checked, de-duplicated and split (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fruitstack_model.datasets import load_dataset
from train import fingerprint, split

from pipelines.data import FeedbackRow, combine, deduplicate, feedback_docs, feedback_row, in_evaluation

IRIS = load_dataset("iris")
NAMES = IRIS.feature_names
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def doc(
    values: list[float], label: str, *, at: datetime = T0, names: tuple[str, ...] = NAMES
) -> dict[str, Any]:
    """A logged prediction with feedback, shaped as the backend stores it."""
    return {
        "features": dict(zip(names, values, strict=True)),
        "label": "setosa",
        "feedback": {"label": label, "at": at},
    }


def test_a_feedback_row_takes_the_datasets_feature_order() -> None:
    shuffled = dict(reversed(list(doc([1, 2, 3, 4], "virginica")["features"].items())))

    row = feedback_row(
        {"features": shuffled, "feedback": {"label": "virginica", "at": T0}}, NAMES, IRIS.class_names
    )

    assert row == FeedbackRow((1.0, 2.0, 3.0, 4.0), "virginica", T0)


@pytest.mark.parametrize(
    "bad",
    [
        doc([1, 2, 3, 4], "banana"),  # no such class
        doc([1, 2, 3], "setosa", names=NAMES[:3]),  # another model's features
        doc([1, 2, 3, float("nan")], "setosa"),
        {"features": {n: 1.0 for n in NAMES}},  # no feedback
        {"features": {n: "wide" for n in NAMES}, "feedback": {"label": "setosa", "at": T0}},
    ],
)
def test_rows_that_do_not_fit_the_dataset_are_unusable(bad: dict[str, Any]) -> None:
    assert feedback_row(bad, NAMES, IRIS.class_names) is None


def test_an_iso_string_time_is_read_as_a_time() -> None:
    # nx-27017 may return a datetime written by $set as a string.
    row = feedback_row(
        doc([1, 2, 3, 4], "setosa", at=T0) | {"feedback": {"label": "setosa", "at": T0.isoformat()}},
        NAMES,
        IRIS.class_names,
    )

    assert row is not None
    assert row.at == T0


def test_duplicates_keep_the_newest_label_and_built_in_rows_are_dropped() -> None:
    rows = [
        FeedbackRow((1.0, 1.0, 1.0, 1.0), "setosa", T0),
        FeedbackRow((1.0, 1.0, 1.0, 1.0), "virginica", T0 + timedelta(minutes=1)),  # relabelled
        FeedbackRow((2.0, 2.0, 2.0, 2.0), "setosa", T0),
        FeedbackRow(tuple(float(v) for v in IRIS.features[0]), str(IRIS.labels[0]), T0),  # in the dataset
    ]

    unique, dropped = deduplicate(rows, IRIS.features)

    assert sorted(unique, key=lambda r: r.features) == [rows[1], rows[2]]
    assert dropped == 2


def test_the_evaluation_share_is_stable_and_about_the_asked_share() -> None:
    rng = np.random.default_rng(0)
    rows = [FeedbackRow(tuple(rng.uniform(0, 8, 4).tolist()), "setosa", T0) for _ in range(2000)]

    chosen = [in_evaluation(r, 0.3) for r in rows]

    assert chosen == [in_evaluation(r, 0.3) for r in rows]  # the same rows every run
    assert 0.26 < sum(chosen) / len(rows) < 0.34
    assert not any(in_evaluation(r, 0.0) for r in rows)


def test_combine_keeps_the_fixed_holdout_and_adds_feedback_to_both_sides() -> None:
    rng = np.random.default_rng(1)
    docs = [doc(rng.uniform(4, 8, 4).tolist(), "virginica", at=T0 + timedelta(seconds=i)) for i in range(100)]
    docs += [docs[0], doc([1, 2, 3, 4], "banana")]  # a duplicate and an unusable row

    data = combine(IRIS, docs, seed=42, holdout=0.25, feedback_holdout=0.3)

    base = split(IRIS, seed=42, holdout=0.25)
    counts = data.counts
    assert (counts.feedback_found, counts.unusable_rows, counts.duplicate_rows) == (102, 1, 1)
    assert counts.feedback_train_rows + counts.feedback_eval_rows == 100
    assert 0 < counts.feedback_eval_rows < 100
    assert counts.train_rows == len(base.x_train) + counts.feedback_train_rows == len(data.rows.x_train)
    assert counts.eval_rows == len(base.x_holdout) + counts.feedback_eval_rows == len(data.rows.x_holdout)
    # The built-in holdout rows come first, unchanged: every run measures on them.
    np.testing.assert_array_equal(data.rows.x_holdout[: len(base.x_holdout)], base.x_holdout)
    assert set(data.rows.y_train[len(base.x_train) :]) == {"virginica"}


def test_no_feedback_is_the_built_in_split_with_its_fingerprint() -> None:
    data = combine(IRIS, [], seed=42, holdout=0.25, feedback_holdout=0.3)

    base = split(IRIS, seed=42, holdout=0.25)
    # What train.py records for a version trained on iris alone (seed 42): a run finds it unchanged.
    assert fingerprint(data.rows.x_train, data.rows.y_train) == fingerprint(base.x_train, base.y_train)
    assert data.counts.feedback_found == 0


def test_feedback_docs_take_the_labelled_rows_out_of_prediction_pages() -> None:
    page = {
        "features": {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]},
        "feedback": {"2": {"label": "x", "at": T0}, "0": {"label": "y", "at": T0}, "9": {"label": "z"}},
    }
    unlabelled = {"features": {"a": [7.0], "b": [8.0]}}
    docs = feedback_docs([page, unlabelled, {"features": "garbage", "feedback": {}}], limit=10)
    assert docs == [
        {"features": {"a": 3.0, "b": 6.0}, "feedback": {"label": "x", "at": T0}},
        {"features": {"a": 1.0, "b": 4.0}, "feedback": {"label": "y", "at": T0}},
    ]  # index 9 is not in the page: left out
    assert len(feedback_docs([page, page], limit=3)) == 3
