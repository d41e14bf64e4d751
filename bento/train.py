"""Train the fruitstack classifier and register it in the BentoML model store.

python train.py [--dataset iris|wine] [--seed N] [--holdout 0.25] [--output model.pkl]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fruitstack_model.datasets import DATASET_NAMES, Dataset, load_dataset
from fruitstack_model.model_store import dump_pipeline, save_to_store
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints

SAMPLE_ROWS = 200  # enough points for the UI's scatter plot, small enough for model metadata
LIBRARIES = ("scikit-learn", "numpy", "joblib", "bentoml")


@dataclass(frozen=True)
class TrainingResult:
    pipeline: Pipeline
    metadata: dict[str, Any]  # everything but the artifact's sha256, which the store adds


def build_pipeline(seed: int) -> Pipeline:
    """Scaling plus a linear model: accurate on these tables and cheap to score a million rows."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(max_iter=1000, random_state=seed)),
        ]
    )


def train(dataset: Dataset, *, seed: int, holdout: float, progress: bool = True) -> TrainingResult:
    """Fit on a stratified split and measure on the held-out rows; deterministic for a seed."""
    steps = tqdm(total=4, desc=f"training on {dataset.name}", unit="step", disable=not progress)
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.features, dataset.labels, test_size=holdout, stratify=dataset.labels, random_state=seed
    )
    steps.update()
    pipeline = build_pipeline(seed).fit(x_train, y_train)
    steps.update()
    predicted = pipeline.predict(x_test)
    classes = [str(c) for c in pipeline.classes_]
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1_macro": float(f1_score(y_test, predicted, average="macro")),
    }
    matrix = confusion_matrix(y_test, predicted, labels=pipeline.classes_)
    steps.update()
    metadata = {
        "dataset": dataset.name,
        "features": _feature_summary(dataset.feature_names, x_train),
        "classes": classes,
        "metrics": metrics,
        "confusion_matrix": matrix.astype(int).tolist(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_sample": _training_sample(dataset.feature_names, x_train, y_train, seed=seed),
        "library_versions": {name: importlib_metadata.version(name) for name in LIBRARIES},
        "seed": seed,
        "holdout": holdout,
        "n_train": len(x_train),
        "n_holdout": len(x_test),
    }
    steps.update()
    steps.close()
    return TrainingResult(pipeline=pipeline, metadata=metadata)


def _feature_summary(names: tuple[str, ...], x: npt.NDArray[np.float64]) -> list[dict[str, Any]]:
    """Per-feature range and mean of the training rows: the UI draws its inputs from these."""
    return [
        {"name": name, "min": float(col.min()), "max": float(col.max()), "mean": float(col.mean())}
        for name, col in zip(names, x.T, strict=True)
    ]


def _training_sample(
    names: tuple[str, ...], x: npt.NDArray[np.float64], y: npt.NDArray[np.str_], *, seed: int
) -> dict[str, Any]:
    """Up to SAMPLE_ROWS training rows, columnar (one list per feature) because plots want columns."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(x), size=min(SAMPLE_ROWS, len(x)), replace=False))
    return {
        "columns": {name: x[picked, i].tolist() for i, name in enumerate(names)},
        "labels": [str(label) for label in y[picked]],
    }


def report(result: TrainingResult, tag: str, output: Path, console: Console) -> None:
    meta = result.metadata
    console.print(
        f"[bold]{tag}[/bold] on {meta['dataset']}, seed {meta['seed']}: {meta['n_holdout']} holdout rows"
    )
    metrics = Table(title="holdout metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in meta["metrics"].items():
        metrics.add_row(name, f"{value:.4f}")
    console.print(metrics)

    matrix = Table(title="confusion matrix")
    matrix.add_column("true \\ predicted")
    for cls in meta["classes"]:
        matrix.add_column(cls, justify="right")
    for cls, row in zip(meta["classes"], meta["confusion_matrix"], strict=True):
        matrix.add_row(cls, *(str(n) for n in row))
    console.print(matrix)
    console.print(f"registered {tag} in the BentoML store; artifact written to {output}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="iris")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--holdout", type=float, default=0.25, help="fraction of rows held out for metrics")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "model.pkl")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    result = train(load_dataset(args.dataset), seed=args.seed, holdout=args.holdout, progress=not args.quiet)
    artifact = dump_pipeline(result.pipeline)
    tag = save_to_store(artifact=artifact, metadata=result.metadata)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(artifact)
    report(result, tag, args.output, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
