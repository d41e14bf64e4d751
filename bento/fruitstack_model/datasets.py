"""The built-in training datasets: scikit-learn's bundled tables, so training never downloads."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn import datasets as sk_datasets


@dataclass(frozen=True)
class Dataset:
    """A numeric feature table with string class labels, plus the names that describe it."""

    name: str
    features: npt.NDArray[np.float64]  # shape (n_rows, n_features)
    labels: npt.NDArray[np.str_]  # shape (n_rows,), class names, not codes
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]


# Each loader returns a sklearn Bunch with data, target, feature_names and target_names.
_LOADERS: dict[str, Callable[[], Any]] = {
    "iris": sk_datasets.load_iris,
    "wine": sk_datasets.load_wine,
}

DATASET_NAMES: tuple[str, ...] = tuple(_LOADERS)


def load_dataset(name: str) -> Dataset:
    """Load one of DATASET_NAMES; labels are the class names so the model predicts words."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}") from None
    bunch = loader()
    class_names = tuple(str(c) for c in bunch.target_names)
    return Dataset(
        name=name,
        features=np.asarray(bunch.data, dtype=np.float64),
        labels=np.asarray(class_names, dtype=np.str_)[bunch.target],
        feature_names=tuple(_identifier(str(f)) for f in bunch.feature_names),
        class_names=class_names,
    )


def _identifier(name: str) -> str:
    """'sepal length (cm)' -> 'sepal_length_cm': names people can type in JSON and grpcurl."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")
