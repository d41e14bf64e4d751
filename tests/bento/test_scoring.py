"""The folded scorer gives the pipeline's own probabilities, and is not used where it would not."""

from __future__ import annotations

import numpy as np
from fruitstack_model.datasets import load_dataset
from fruitstack_model.scoring import _fold_linear, compile_scorer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from train import train


def test_folded_scorer_equals_predict_proba_far_outside_the_training_range() -> None:
    for name in ("iris", "wine"):
        dataset = load_dataset(name)
        pipeline = train(dataset, seed=3, holdout=0.25, progress=False).pipeline
        assert _fold_linear(pipeline) is not None
        scorer = compile_scorer(pipeline, dataset.features[:20])
        rng = np.random.default_rng(1)
        rows = np.vstack([dataset.features, rng.normal(0, 1e4, size=(500, dataset.features.shape[1]))])
        np.testing.assert_allclose(scorer(rows), pipeline.predict_proba(rows), rtol=0, atol=1e-12)


def test_other_pipelines_are_scored_by_the_pipeline_itself() -> None:
    dataset = load_dataset("iris")
    tree = Pipeline([("scale", StandardScaler()), ("tree", DecisionTreeClassifier(random_state=0))])
    tree.fit(dataset.features, dataset.labels)
    assert _fold_linear(tree) is None
    scorer = compile_scorer(tree, dataset.features[:5])
    np.testing.assert_array_equal(scorer(dataset.features), tree.predict_proba(dataset.features))


def test_rows_that_overflow_come_out_nan_in_any_batch_and_the_others_exact() -> None:
    dataset = load_dataset("iris")
    linear = train(dataset, seed=3, holdout=0.25, progress=False).pipeline
    tree = Pipeline([("scale", StandardScaler()), ("tree", DecisionTreeClassifier(random_state=0))])
    tree.fit(dataset.features, dataset.labels)
    good = dataset.features[:6]
    rows = np.vstack([good[:3], [[1e308, 1e308, 5.1, 1.8]], good[3:]])
    for pipeline in (linear, tree):  # the folded scorer, and scikit-learn's own (which raises on inf)
        scorer = compile_scorer(pipeline, dataset.features[:20])
        alone = scorer(rows[3:4])
        batch = scorer(rows)
        assert np.isnan(alone).all()
        assert np.isnan(batch[3]).all()
        np.testing.assert_allclose(np.delete(batch, 3, axis=0), pipeline.predict_proba(good), atol=1e-12)
