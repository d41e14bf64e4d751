"""Fast probability scoring: the trained Pipeline folded into one matrix product and a softmax.

scikit-learn's `predict_proba` spends about a millisecond per call on input validation and
per-step dispatch, which dominates when the backend sends a few rows at a time. For the pipeline
train.py builds (StandardScaler then multinomial LogisticRegression) the same probabilities are

    softmax(((x - mean) / scale) @ coef.T + intercept) = softmax(x @ W + b)

with W = (coef / scale).T and b = intercept - (mean / scale) @ coef.T computed once. The folded
scorer is used only after it reproduced the pipeline's own output on probe rows; any other
pipeline shape is scored by the pipeline itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

Matrix = npt.NDArray[np.float64]
Scorer = Callable[[Matrix], Matrix]

# Folding reorders float operations; agreement is to rounding error, far below any decision.
TOLERANCE = 1e-9


def compile_scorer(pipeline: Pipeline, probe: Matrix) -> Scorer:
    """A function rows -> probabilities equal to pipeline.predict_proba (checked on probe rows)."""
    folded = _fold_linear(pipeline)
    if folded is not None and np.allclose(
        folded(probe), pipeline.predict_proba(probe), rtol=0, atol=TOLERANCE
    ):
        return folded
    return _pipeline_scorer(pipeline)


def _pipeline_scorer(pipeline: Pipeline) -> Scorer:
    """pipeline.predict_proba, with NaN rows where scikit-learn refuses a row.

    Rows arrive validated (finite, the right width), so a ValueError here is a value that overflowed
    inside the pipeline (e.g. 1e308 scaled to inf). Halving the rows finds the culprits with a few
    calls, and the caller refuses the NaN rows by name instead of answering 500 for all.
    """
    n_classes = len(pipeline.classes_)

    def score(rows: Matrix) -> Matrix:
        try:
            return np.asarray(pipeline.predict_proba(rows), dtype=np.float64)
        except ValueError:
            if len(rows) == 1:
                return np.full((1, n_classes), np.nan)
            half = len(rows) // 2
            return np.vstack([score(rows[:half]), score(rows[half:])])

    return score


def _fold_linear(pipeline: Pipeline) -> Scorer | None:
    steps = [step for _, step in pipeline.steps]
    if (
        len(steps) != 2
        or not isinstance(steps[0], StandardScaler)
        or not isinstance(steps[1], LogisticRegression)
    ):
        return None
    scaler, classifier = steps
    coef = np.asarray(classifier.coef_, dtype=np.float64)
    if coef.shape[0] < 3:  # binary problems use a sigmoid, not a softmax; let sklearn do those
        return None
    n_features = coef.shape[1]
    mean = np.zeros(n_features) if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
    scale = np.ones(n_features) if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)
    # Class-major (n_classes, n_rows) layout: the per-row max and sum of a softmax over 3 classes
    # become elementwise operations on long contiguous rows, several times faster than reducing
    # along axis 1 of an (n_rows, 3) array.
    weights = np.ascontiguousarray(coef / scale)  # (n_classes, n_features)
    bias = (np.asarray(classifier.intercept_, dtype=np.float64) - coef @ (mean / scale))[:, None]
    # Above this magnitude in any feature a logit may overflow (1e308 times a weight above 1 is inf,
    # and inf - inf is NaN), and whether it does depends on the order BLAS sums in, which differs
    # between one row and a batch. Such rows come out NaN, the same in any batch, and are refused by
    # name (inputs.unscorable_rows); below it every logit is finite and the softmax exact.
    limit = 1e300 / max(float(np.abs(weights).sum(axis=1).max()), 1.0)

    def score(rows: Matrix) -> Matrix:
        with np.errstate(over="ignore", invalid="ignore"):
            logits = weights @ rows.T
            logits += bias
            peak = np.max(logits, axis=0)  # softmax is shift-invariant; subtracting avoids overflow
            logits -= peak
            np.exp(logits, out=logits)
            logits /= np.sum(logits, axis=0)
        probabilities = np.ascontiguousarray(logits.T)
        probabilities[np.abs(rows).max(axis=1) > limit] = np.nan
        return probabilities

    return score
