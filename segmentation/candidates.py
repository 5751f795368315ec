"""The candidate catalogue: each model family's estimator, default settings, preprocessing and search space."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sklearn.base import ClassifierMixin
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from segmentation.errors import ModelError
from segmentation.preprocessing import ORDINAL_CATEGORICAL_MASK, build_pipeline


def _hist_gradient_boosting(random_state: int, **overrides: Any) -> HistGradientBoostingClassifier:
    """Native categorical splits on ordinal codes (see CANDIDATE_ENCODINGS), small regularised trees and column
    subsampling: the best fixed setting of a 5x2 CV search on the real data (BENCHMARKS.md, "Model quality");
    train_model still tunes it with PARAM_GRIDS.

    100 iterations at learning rate 0.08 rather than 400 at 0.02: a quarter of the trees, so scoring predicts
    about 3.5x faster. On the quality bench's folds, accuracy is equal within noise; alone, log loss is 0.0008
    higher (1.0643 vs 1.0635), inside the hgb_rf_vote champion equal within noise (BENCHMARKS.md, "Booster
    length").
    """
    settings: dict[str, Any] = {
        "learning_rate": 0.08,
        "max_iter": 100,
        "max_leaf_nodes": 7,
        "min_samples_leaf": 30,
        "l2_regularization": 10.0,
        "max_features": 0.5,
        "categorical_features": list(ORDINAL_CATEGORICAL_MASK),
        "early_stopping": False,
        "random_state": random_state,
    }
    return HistGradientBoostingClassifier(**{**settings, **overrides})


# Every candidate is built from a random_state; n_jobs=1 wherever the estimator has a working n_jobs
# (threads are controlled by the caller). LogisticRegression's n_jobs has no effect since sklearn 1.8.
# GaussianNB's var_smoothing is raised from 1e-9: one-hot columns that are constant within a class give
# near-zero variances, log-likelihoods near -1e9 and probabilities that no longer sum to one.
CANDIDATES: dict[str, Callable[[int], ClassifierMixin]] = {
    "logistic_regression": lambda rs: LogisticRegression(C=1.0, max_iter=1000, random_state=rs),
    "knn": lambda rs: KNeighborsClassifier(n_neighbors=30, n_jobs=1),
    "decision_tree": lambda rs: DecisionTreeClassifier(max_depth=6, min_samples_leaf=10, random_state=rs),
    "naive_bayes": lambda rs: GaussianNB(var_smoothing=1e-2),
    "random_forest": lambda rs: RandomForestClassifier(n_estimators=200, min_samples_leaf=5, n_jobs=1, random_state=rs),
    "gradient_boosting": lambda rs: GradientBoostingClassifier(
        n_estimators=100, max_depth=3, subsample=0.8, random_state=rs
    ),
    "hist_gradient_boosting": lambda rs: _hist_gradient_boosting(rs),
    # Soft vote of the HistGradientBoosting candidate (native categories) and a shallow-leaved random forest
    # (one-hot): their errors differ, so the averaged probabilities beat either alone on the real data
    # (BENCHMARKS.md).
    "hgb_rf_vote": lambda rs: VotingClassifier(
        [
            ("hgb", build_pipeline(_hist_gradient_boosting(rs), encoding="ordinal")),
            (
                "rf",
                build_pipeline(
                    RandomForestClassifier(
                        n_estimators=100, min_samples_leaf=10, max_features=0.3, n_jobs=1, random_state=rs
                    )
                ),
            ),
        ],
        voting="soft",
        n_jobs=1,
    ),
}
# Preprocessing per candidate (segmentation.features.ENCODINGS); "one_hot" when not listed.
CANDIDATE_ENCODINGS: dict[str, str] = {"hist_gradient_boosting": "ordinal", "hgb_rf_vote": "own"}

# Search spaces for the successive-halving random search (lists: sampled without replacement).
PARAM_GRIDS: dict[str, dict[str, list[Any]]] = {
    "logistic_regression": {"classifier__C": [0.1, 1.0, 10.0]},
    "knn": {"classifier__n_neighbors": [15, 30, 60], "classifier__weights": ["uniform", "distance"]},
    "decision_tree": {"classifier__max_depth": [4, 6, 8], "classifier__min_samples_leaf": [10, 40]},
    "naive_bayes": {"classifier__var_smoothing": [1e-3, 1e-2, 1e-1]},
    "random_forest": {"classifier__min_samples_leaf": [3, 10], "classifier__max_depth": [None, 12]},
    "gradient_boosting": {
        "classifier__max_depth": [2, 3],
        "classifier__learning_rate": [0.05, 0.1],
        "classifier__n_estimators": [100, 200],
    },
    "hist_gradient_boosting": {
        "classifier__learning_rate": [0.05, 0.08, 0.12],
        "classifier__max_leaf_nodes": [5, 7, 15],
        "classifier__min_samples_leaf": [15, 30, 60],
        "classifier__l2_regularization": [1.0, 10.0],
        "classifier__max_features": [0.5, 1.0],
    },
    # Equal vote weights stay fixed: tuned on log loss they drift towards the forest and cost accuracy.
    "hgb_rf_vote": {
        "classifier__hgb__classifier__learning_rate": [0.06, 0.08, 0.12],
        "classifier__rf__classifier__min_samples_leaf": [5, 10, 20],
        "classifier__rf__classifier__max_features": [0.2, 0.3, 0.5],
    },
}


def build_candidate(name: str, random_state: int) -> Pipeline:
    """The unfitted pipeline of candidate ``name`` (its preprocessing from CANDIDATE_ENCODINGS)."""
    check_candidate_names([name])
    return build_pipeline(CANDIDATES[name](random_state), encoding=CANDIDATE_ENCODINGS.get(name, "one_hot"))


def check_candidate_names(names: Sequence[str] | None) -> list[str]:
    """Return the candidate names (all when None), de-duplicated; ModelError for unknown ones."""
    if names is None:
        return list(CANDIDATES)
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise ModelError(f"unknown candidate(s) {unknown}; allowed: {sorted(CANDIDATES)}")
    chosen = list(dict.fromkeys(names))
    if not chosen:
        raise ModelError(f"no candidates given; allowed: {sorted(CANDIDATES)}")
    return chosen


def default_params(name: str, random_state: int = 42) -> dict[str, Any]:
    """The untuned values, in candidate ``name``'s pipeline, of the parameters PARAM_GRIDS[name] searches."""
    params = build_candidate(name, random_state).get_params()
    return {key: params[key] for key in PARAM_GRIDS[name]}
