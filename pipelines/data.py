"""The training data of a retraining: the built-in dataset plus the feedback-labelled predictions.

Feedback rows are the logged predictions that someone gave the true label. The backend stores them
in pages (its `prediction_pages` collection, described in backend/monitoring/repository.py): column
by column, with `feedback` mapping a prediction's index in the page to its label; `feedback_docs`
takes the labelled ones out, one document each. They are checked against the dataset's features and
classes, de-duplicated (identical inputs keep their newest label; inputs equal to a built-in row are
dropped, the dataset has them already), and split by a hash of their values into training and
evaluation rows, so a row stays on its side in every run and never moves from evaluation into
training later.

The evaluation data is the fixed holdout of the built-in dataset (train.py's split for the seed)
plus the feedback evaluation rows: candidate and champion are scored on the same rows, and a model
that learnt what the old one gets wrong can win.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from fruitstack_model.datasets import Dataset
from train import Split, split

Document = Mapping[str, Any]


@dataclass(frozen=True)
class FeedbackRow:
    features: tuple[float, ...]  # in the dataset's feature order
    label: str
    at: datetime  # when the label was given


@dataclass(frozen=True)
class DataCounts:
    """How many rows of each kind a run saw, for the outcome record."""

    dataset: str
    builtin_rows: int
    feedback_found: int  # predictions with feedback
    unusable_rows: int  # other features, a label the dataset has no class for, non-finite values
    duplicate_rows: int  # same inputs as another feedback row (older label) or a built-in row
    feedback_train_rows: int
    feedback_eval_rows: int
    train_rows: int
    eval_rows: int

    def doc(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TrainingData:
    dataset: Dataset = field(repr=False)
    rows: Split = field(repr=False)
    counts: DataCounts


def feedback_docs(pages: Iterable[Document], *, limit: int) -> list[Document]:
    """The labelled predictions of prediction pages as {features, feedback} documents, at most `limit`."""
    docs: list[Document] = []
    for page in pages:
        features, feedback = page.get("features"), page.get("feedback")
        if not isinstance(features, Mapping) or not isinstance(feedback, Mapping):
            continue
        for key, label in feedback.items():
            try:
                row = {name: values[int(key)] for name, values in features.items()}
            except (TypeError, ValueError, IndexError):
                continue  # not a page as the backend writes it: the row is left out
            docs.append({"features": row, "feedback": label})
            if len(docs) >= limit:
                return docs
    return docs


def feedback_row(doc: Document, feature_names: tuple[str, ...], classes: Iterable[str]) -> FeedbackRow | None:
    """A logged prediction with feedback as a row of this dataset, or None when it does not fit one."""
    features = doc.get("features")
    feedback = doc.get("feedback")
    if not isinstance(features, Mapping) or not isinstance(feedback, Mapping):
        return None
    label = feedback.get("label")
    if not isinstance(label, str) or label not in set(classes) or set(features) != set(feature_names):
        return None
    try:
        values = tuple(float(features[name]) for name in feature_names)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in values):
        return None
    at = feedback.get("at")
    # nx-27017 may hand datetimes back as ISO strings; order is all this is used for.
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if not isinstance(at, datetime):
        at = datetime.min.replace(tzinfo=UTC)
    return FeedbackRow(values, label, at if at.tzinfo else at.replace(tzinfo=UTC))


def deduplicate(
    rows: Iterable[FeedbackRow], builtin: npt.NDArray[np.float64]
) -> tuple[list[FeedbackRow], int]:
    """Unique inputs, each with its newest label; inputs equal to a built-in row dropped. (rows, dropped)."""
    newest: dict[tuple[float, ...], FeedbackRow] = {}
    seen = 0
    for row in rows:
        seen += 1
        kept = newest.get(row.features)
        if kept is None or row.at > kept.at:
            newest[row.features] = row
    known = {tuple(float(v) for v in r) for r in builtin}
    unique = [row for key, row in newest.items() if key not in known]
    return unique, seen - len(unique)


def in_evaluation(row: FeedbackRow, share: float) -> bool:
    """Whether a row is an evaluation row: a hash of its inputs, so the answer never changes."""
    digest = hashlib.sha256(np.asarray(row.features, dtype=np.float64).tobytes()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def combine(
    dataset: Dataset, feedback_docs: Iterable[Document], *, seed: int, holdout: float, feedback_holdout: float
) -> TrainingData:
    """The built-in split plus the usable, unique feedback rows on each side (training, evaluation)."""
    base = split(dataset, seed=seed, holdout=holdout)
    docs = list(feedback_docs)
    rows = (feedback_row(doc, dataset.feature_names, dataset.class_names) for doc in docs)
    usable = [row for row in rows if row is not None]
    unique, duplicates = deduplicate(usable, dataset.features)
    unique.sort(key=lambda r: (r.at, r.features))  # a stable order: the same data, the same fingerprint
    to_eval = [r for r in unique if in_evaluation(r, feedback_holdout)]
    to_train = [r for r in unique if not in_evaluation(r, feedback_holdout)]

    def stack(x: npt.NDArray[np.float64], y: npt.NDArray[np.str_], extra: list[FeedbackRow]) -> Any:
        if not extra:
            return x, y
        ex = np.asarray([r.features for r in extra], dtype=np.float64)
        ey = np.asarray([r.label for r in extra], dtype=np.str_)
        return np.vstack([x, ex]), np.concatenate([y, ey])

    x_train, y_train = stack(base.x_train, base.y_train, to_train)
    x_eval, y_eval = stack(base.x_holdout, base.y_holdout, to_eval)
    counts = DataCounts(
        dataset=dataset.name,
        builtin_rows=len(dataset.features),
        feedback_found=len(docs),
        unusable_rows=len(docs) - len(usable),
        duplicate_rows=duplicates,
        feedback_train_rows=len(to_train),
        feedback_eval_rows=len(to_eval),
        train_rows=len(x_train),
        eval_rows=len(x_eval),
    )
    return TrainingData(dataset=dataset, rows=Split(x_train, y_train, x_eval, y_eval), counts=counts)
