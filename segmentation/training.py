"""Training one model version: the recipe that splits, compares, chooses, tunes and evaluates."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from segmentation.candidates import check_candidate_names
from segmentation.columns import SEGMENTS
from segmentation.errors import ModelError
from segmentation.jsonsafe import json_safe
from segmentation.labelled import cap_rows, check_class_counts, labels_of, model_frame, with_derived
from segmentation.metrics import evaluate_frame, predict_rows_per_second
from segmentation.selection import (
    TuningOptions,
    check_folds,
    choose_candidate,
    compare_candidates,
    tune_or_keep_defaults,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOptions:
    """How to train: which candidates, folds, holdout share, row caps, seed and tuning.

    ``row_cap`` caps the labelled rows used at all (stratified); ``compare_row_cap`` caps the rows on which
    candidate families are compared. None means no cap. ``refit``: after evaluation, fit the served model
    again, with the chosen settings, on the train split and the holdout together (capped to ``row_cap``).
    """

    candidates: Sequence[str] | None = None
    cv_folds: int = 5
    holdout_share: float = 0.2
    row_cap: int | None = None
    random_state: int = 42
    n_jobs: int | None = 1
    compare_row_cap: int | None = 20_000
    tuning: TuningOptions = field(default_factory=TuningOptions)
    refit: bool = True

    def check(self) -> None:
        """ModelError naming the first bad option."""
        check_candidate_names(self.candidates)
        check_folds(self.cv_folds)
        if not 0.0 < self.holdout_share < 1.0:
            raise ModelError(f"holdout_share={self.holdout_share!r} must be between 0 and 1 (exclusive)")
        if self.row_cap is not None and self.row_cap < 2:
            raise ModelError(f"row_cap={self.row_cap!r} must be None or an integer >= 2")


@dataclass(frozen=True)
class TrainingResult:
    """The served pipeline, the evaluation pipeline with its holdout metrics, and the candidate comparison.

    ``eval_pipeline`` was fitted on the train split only (``n_train`` rows), so ``metrics`` (from the holdout)
    are honest. ``pipeline`` is the model that scores: the same settings refitted on every labelled row used
    (``n_served`` rows: train split and holdout); without ``refit`` it is ``eval_pipeline`` itself.
    """

    pipeline: Pipeline
    eval_pipeline: Pipeline
    model_name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    comparison: list[dict[str, Any]]
    n_train: int
    n_holdout: int
    n_served: int
    label_shares: dict[str, float]
    seconds: float


def _split(
    labelled: pd.DataFrame, holdout: pd.DataFrame | None, options: TrainingOptions
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series, pd.Series]:
    """Checked, capped train and holdout frames: (X_train, X_holdout, y_train, y_holdout, all labels used)."""
    labels = labels_of(labelled)
    check_class_counts(labels, cv_folds=options.cv_folds, holdout_share=options.holdout_share)
    data, labels = cap_rows(labelled, labels, options.row_cap, options.random_state)
    check_class_counts(labels, cv_folds=options.cv_folds, holdout_share=options.holdout_share)
    features = model_frame(with_derived(data))
    if holdout is None:
        X_train, X_holdout, y_train, y_holdout = train_test_split(
            features, labels, test_size=options.holdout_share, stratify=labels, random_state=options.random_state
        )
        return X_train, X_holdout, y_train, y_holdout, labels
    return features, model_frame(with_derived(holdout)), labels, labels_of(holdout), labels


def refit_on_all(
    tuned: Pipeline, X_parts: Sequence[pd.DataFrame], y_parts: Sequence[pd.Series], options: TrainingOptions
) -> tuple[Pipeline, int]:
    """A fresh copy of ``tuned`` (same settings) fitted on the concatenated parts, capped to ``row_cap``;
    returns it and the number of rows it was fitted on."""
    X = pd.concat(list(X_parts))
    y = pd.concat(list(y_parts))
    X, y = cap_rows(X, y, options.row_cap, options.random_state)
    return clone(tuned).fit(X, y), len(X)


def train_model(
    labelled: pd.DataFrame, options: TrainingOptions = TrainingOptions(), *, holdout: pd.DataFrame | None = None
) -> TrainingResult:
    """Compare candidates with CV on the train split, choose, tune, evaluate on the holdout, then refit.

    ``labelled`` holds clean customers with a ``segment`` column; derived columns are added when absent.
    When ``holdout`` is given, all of ``labelled`` is the train split and ``holdout`` is evaluated instead
    of a random split (the pipeline passes a stable holdout so that model versions compare fairly).
    ``eval_pipeline`` is fitted on the train split only, so its holdout metrics are honest; ``pipeline``, the
    one to serve, is refitted with the chosen settings on the train split and the holdout together.
    ``metrics["predict_rows_per_s"]`` is the measured ``predict_proba`` throughput (a timing, so the only
    metric that differs between equal runs).
    """
    started = time.perf_counter()
    options.check()
    names = check_candidate_names(options.candidates)
    X_train, X_holdout, y_train, y_holdout, labels = _split(labelled, holdout, options)
    logger.info("training on %d rows, holdout %d rows, candidates %s", len(X_train), len(X_holdout), names)

    folds = {"cv_folds": options.cv_folds, "random_state": options.random_state, "n_jobs": options.n_jobs}
    comparison = compare_candidates(X_train, y_train, names, row_cap=options.compare_row_cap, **folds)
    best_name = choose_candidate(comparison)
    if best_name != comparison.loc[0, "name"]:
        logger.info("chose %s: within noise of %s and smaller", best_name, comparison.loc[0, "name"])
    tuned = tune_or_keep_defaults(
        best_name, X_train, y_train, options=options.tuning, check_row_cap=options.compare_row_cap, **folds
    )

    metrics = evaluate_frame(tuned.pipeline, X_holdout, y_holdout)
    metrics["cv_score"] = tuned.cv_score
    metrics["cv_scoring"] = tuned.cv_scoring
    metrics["tuned_over_defaults"] = tuned.tuned_over_defaults
    metrics["predict_rows_per_s"] = predict_rows_per_second(tuned.pipeline, X_holdout)
    if options.refit:
        served, n_served = refit_on_all(tuned.pipeline, [X_train, X_holdout], [y_train, y_holdout], options)
        logger.info("refitted %s with the chosen settings on %d rows (train split and holdout)", best_name, n_served)
    else:
        served, n_served = tuned.pipeline, len(X_train)
    shares = labels.value_counts(normalize=True)
    seconds = time.perf_counter() - started
    logger.info(
        "trained %s in %.1f s: holdout accuracy %.4f, macro-F1 %.4f, log loss %.4f",
        best_name,
        seconds,
        metrics["accuracy"],
        metrics["macro_f1"],
        metrics["log_loss"],
    )
    return TrainingResult(
        pipeline=served,
        eval_pipeline=tuned.pipeline,
        model_name=best_name,
        params=json_safe(tuned.params),
        metrics=json_safe(metrics),
        comparison=json_safe(comparison.to_dict(orient="records")),
        n_train=len(X_train),
        n_holdout=len(X_holdout),
        n_served=n_served,
        label_shares={s: float(shares.get(s, 0.0)) for s in SEGMENTS},
        seconds=float(seconds),
    )
