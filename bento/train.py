"""Train the fruitstack classifier, record the run in MLflow, register it and pass it through the gate.

python train.py [--dataset iris|wine] [--seed N] [--holdout 0.25] [--param NAME=VALUE ...]
                [--gate-metric f1_macro] [--gate-margin 0.0] [--promote] [--if-no-champion]

The tracking server comes from MLFLOW_TRACKING_URI (default http://localhost:5000, the one
`nox -s dev` runs). Each run registers a new version of `fruitstack-classifier`; it becomes the
`champion` only if it scores at least as well as the current champion on this run's holdout rows
(minus --gate-margin), otherwise the `challenger`. --promote makes it champion regardless.

`train`, `evaluate` and `register` are plain functions, so that a scheduled pipeline (pipelines/) calls them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fruitstack_model.datasets import DATASET_NAMES, Dataset, load_dataset
from fruitstack_model.exceptions import InvalidInput, ModelServiceError
from fruitstack_model.gate import GATE_METRICS, GateDecision, IncomparableModel, check_gate_settings, record
from fruitstack_model.gate import run_gate as gate_against_champion
from fruitstack_model.model_store import LoadedModel
from fruitstack_model.reference import reference_summary
from fruitstack_model.registry import DEFAULT_TRACKING_URI, REGISTERED_MODEL, Registry, configure_http
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints

SAMPLE_ROWS = 200  # enough points for the UI's scatter plot, small enough for model metadata
LIBRARIES = ("scikit-learn", "numpy", "joblib", "bentoml", "mlflow-skinny", "datasketches")
# The classifier's defaults where they differ from scikit-learn's; --param overrides any of them.
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {"max_iter": 1000}


@dataclass(frozen=True)
class TrainingResult:
    pipeline: Pipeline
    metadata: dict[str, Any]  # the version's info file: what the service answers /model with
    params: dict[str, Any]  # what the run records as parameters: dataset, seed, hyperparameters
    metrics: dict[str, float]  # holdout metrics, overall and per class (flat, for MLflow)
    # The holdout rows: the gate scores the current champion on exactly these.
    x_holdout: npt.NDArray[np.float64] = field(repr=False)
    y_holdout: npt.NDArray[np.str_] = field(repr=False)


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """--param NAME=VALUE pairs -> LogisticRegression keyword arguments, values typed like JSON."""
    known = LogisticRegression().get_params()
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidInput(f"--param wants NAME=VALUE, got {pair!r}")
        if name not in known or name == "random_state":  # the seed is --seed
            raise InvalidInput(
                f"unknown hyperparameter {name!r}; LogisticRegression takes: "
                f"{', '.join(sorted(set(known) - {'random_state'}))}"
            )
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw  # a bare word such as lbfgs or balanced
    return params


def build_pipeline(seed: int, params: Mapping[str, Any] | None = None) -> Pipeline:
    """Scaling plus a linear model: accurate on these tables and cheap to score a million rows."""
    hyper = {**DEFAULT_HYPERPARAMETERS, **(params or {})}
    try:
        classifier = LogisticRegression(random_state=seed, **hyper)
    except TypeError as exc:
        raise InvalidInput(f"bad hyperparameters {hyper}: {exc}") from None
    return Pipeline([("scale", StandardScaler()), ("classify", classifier)])


def evaluate(
    predicted: npt.NDArray[np.str_], expected: npt.NDArray[np.str_], classes: Sequence[str]
) -> dict[str, float]:
    """Holdout metrics: accuracy, macro-F1, and precision/recall/F1 per class (flat names)."""
    metrics = {
        "accuracy": float(accuracy_score(expected, predicted)),
        "f1_macro": float(
            f1_score(expected, predicted, labels=list(classes), average="macro", zero_division=0)
        ),
    }
    precision, recall, f1, _ = precision_recall_fscore_support(
        expected, predicted, labels=list(classes), zero_division=0
    )
    for i, cls in enumerate(classes):
        metrics[f"precision.{cls}"] = float(precision[i])
        metrics[f"recall.{cls}"] = float(recall[i])
        metrics[f"f1.{cls}"] = float(f1[i])
    return metrics


def fingerprint(x: npt.NDArray[np.float64], y: npt.NDArray[np.str_]) -> str:
    """sha256 of the training rows and labels: equal fingerprints, equal training data."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    digest.update("\n".join(str(label) for label in y).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Split:
    """Training rows and holdout rows (features and labels of each)."""

    x_train: npt.NDArray[np.float64] = field(repr=False)
    y_train: npt.NDArray[np.str_] = field(repr=False)
    x_holdout: npt.NDArray[np.float64] = field(repr=False)
    y_holdout: npt.NDArray[np.str_] = field(repr=False)


def split(dataset: Dataset, *, seed: int, holdout: float) -> Split:
    """The stratified split `train` makes: the same seed and holdout give the same rows."""
    if not 0 < holdout < 1:
        raise InvalidInput(f"--holdout must be a fraction between 0 and 1, got {holdout}")
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.features, dataset.labels, test_size=holdout, stratify=dataset.labels, random_state=seed
    )
    return Split(x_train, y_train, x_test, y_test)


def train(
    dataset: Dataset,
    *,
    seed: int,
    holdout: float,
    params: Mapping[str, Any] | None = None,
    progress: bool = True,
    rows: Split | None = None,
) -> TrainingResult:
    """Fit on a stratified split and measure on the held-out rows; deterministic for a seed.

    rows: an explicit split instead (pipelines/ keeps this split's holdout fixed and adds
    feedback-labelled rows to both sides); `dataset` then only names the data and its features.
    """
    steps = tqdm(total=4, desc=f"training on {dataset.name}", unit="step", disable=not progress)
    rows = rows or split(dataset, seed=seed, holdout=holdout)
    x_train, x_test, y_train, y_test = rows.x_train, rows.x_holdout, rows.y_train, rows.y_holdout
    steps.update()
    pipeline = build_pipeline(seed, params).fit(x_train, y_train)
    steps.update()
    predicted = pipeline.predict(x_test)
    classes = [str(c) for c in pipeline.classes_]
    metrics = evaluate(predicted, y_test, classes)
    matrix = confusion_matrix(y_test, predicted, labels=pipeline.classes_)
    steps.update()
    hyperparameters = pipeline.named_steps["classify"].get_params()
    metadata = {
        "dataset": dataset.name,
        "features": _feature_summary(dataset.feature_names, x_train),
        "classes": classes,
        "metrics": {"accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"]},
        "confusion_matrix": matrix.astype(int).tolist(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_sample": _training_sample(dataset.feature_names, x_train, y_train, seed=seed),
        # What the backend measures drift against (fruitstack_model/reference.py).
        "reference": reference_summary(dataset.feature_names, x_train, y_train),
        "library_versions": {name: importlib_metadata.version(name) for name in LIBRARIES},
        "seed": seed,
        "holdout": holdout,
        "n_train": len(x_train),
        "n_holdout": len(x_test),
        "hyperparameters": {k: _jsonable(v) for k, v in hyperparameters.items()},
        "data_sha256": fingerprint(x_train, y_train),
    }
    run_params = {
        "dataset": dataset.name,
        "seed": seed,
        "holdout": holdout,
        **{f"model.{k}": v for k, v in hyperparameters.items()},
    }
    steps.update()
    steps.close()
    return TrainingResult(
        pipeline=pipeline,
        metadata=metadata,
        params=run_params,
        metrics=metrics,
        x_holdout=x_test,
        y_holdout=y_test,
    )


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


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


def score_on_holdout(result: TrainingResult) -> Any:
    """`evaluate` for another model (the champion) on this result's holdout rows."""
    names = tuple(f["name"] for f in result.metadata["features"])
    classes = tuple(result.metadata["classes"])

    def score(model: LoadedModel) -> dict[str, float]:
        if model.feature_names != names:
            raise IncomparableModel(
                f"the champion v{model.version} was trained on {model.metadata['dataset']}, "
                f"with other features than this {result.metadata['dataset']} model"
            )
        if set(model.classes) != set(classes):
            raise IncomparableModel(f"the champion v{model.version} predicts other classes")
        predicted = np.asarray(model.labels(model.predict_proba(result.x_holdout)))
        return evaluate(predicted, result.y_holdout, classes)

    return score


@dataclass(frozen=True)
class Registration:
    version: str
    run_id: str
    sha256: str
    artifact: bytes
    decision: GateDecision


def register(
    result: TrainingResult,
    registry: Registry,
    *,
    gate_metric: str = "f1_macro",
    gate_margin: float = 0.0,
    promote: bool = False,
) -> Registration:
    """Log the run, register the version, gate it against the champion and record the decision."""
    from fruitstack_model.tracking import log_and_register  # imports mlflow: seconds

    check_gate_settings(gate_metric, gate_margin)
    names = [f["name"] for f in result.metadata["features"]]
    example = {name: [float(result.x_holdout[0, i])] for i, name in enumerate(names)}
    registered = log_and_register(
        registry,
        pipeline=result.pipeline,
        params={**result.params, "gate_metric": gate_metric, "gate_margin": gate_margin},
        metrics=result.metrics,
        info=result.metadata,
        input_example=example,
    )
    decision = gate_against_champion(
        registry,
        candidate_version=registered.version,
        candidate_metrics=result.metrics,
        evaluate=score_on_holdout(result),
        metric=gate_metric,
        margin=gate_margin,
        forced=promote,
    )
    decision = record(registry, registered.version, decision)
    return Registration(
        version=registered.version,
        run_id=registered.run_id,
        sha256=registered.sha256,
        artifact=registered.artifact,
        decision=decision,
    )


def report(result: TrainingResult, registration: Registration, registry: Registry, console: Console) -> None:
    meta = result.metadata
    console.print(
        f"[bold]{registry.name} version {registration.version}[/bold] (run {registration.run_id}) "
        f"on {meta['dataset']}, seed {meta['seed']}: {meta['n_holdout']} holdout rows"
    )
    metrics = Table(title="holdout metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in result.metrics.items():
        metrics.add_row(name, f"{value:.4f}")
    console.print(metrics)

    matrix = Table(title="confusion matrix")
    matrix.add_column("true \\ predicted")
    for cls in meta["classes"]:
        matrix.add_column(cls, justify="right")
    for cls, row in zip(meta["classes"], meta["confusion_matrix"], strict=True):
        matrix.add_row(cls, *(str(n) for n in row))
    console.print(matrix)
    decision = registration.decision
    console.print(f"gate: [bold]{decision.decision}[/bold]: {decision.reason}")
    console.print(f"registered in {registry.tracking_uri}; artifact sha256 {registration.sha256}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="iris")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--holdout", type=float, default=0.25, help="fraction of rows held out for metrics")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a LogisticRegression hyperparameter, e.g. --param C=0.5 (repeatable)",
    )
    parser.add_argument("--gate-metric", choices=GATE_METRICS, default="f1_macro")
    parser.add_argument(
        "--gate-margin", type=float, default=0.0, help="how much worse than the champion still passes"
    )
    parser.add_argument("--promote", action="store_true", help="make this version champion regardless")
    parser.add_argument(
        "--if-no-champion", action="store_true", help="do nothing when the registry has a champion already"
    )
    parser.add_argument("--registered-model", default=REGISTERED_MODEL)
    parser.add_argument("--output", type=Path, help="also write the registered model.pkl here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    console = Console()
    # A stopped server should fail this run within seconds, with a little patience for a busy one.
    configure_http(timeout_s=30, retries=2)
    registry = Registry(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI, args.registered_model)
    try:
        if args.if_no_champion and (champion := registry.champion()) is not None:
            console.print(
                f"{registry.name} has a champion already (version {champion.version}); not training"
            )
            return 0
        params = parse_params(args.param)
        result = train(
            load_dataset(args.dataset),
            seed=args.seed,
            holdout=args.holdout,
            params=params,
            progress=not args.quiet,
        )
        registration = register(
            result, registry, gate_metric=args.gate_metric, gate_margin=args.gate_margin, promote=args.promote
        )
    except (ModelServiceError, ValueError) as exc:
        console.print(f"[red]train.py: {exc}[/red]")
        return 2
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(registration.artifact)
    report(result, registration, registry, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
