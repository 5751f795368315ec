"""Choosing a model: compare candidates by cross-validation, prefer the smallest within noise of the best, and
tune the chosen family by successive halving, keeping its defaults unless tuning wins by more than noise."""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (enables HalvingRandomSearchCV)
from sklearn.metrics import log_loss, make_scorer
from sklearn.model_selection import HalvingRandomSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline

from segmentation.candidates import PARAM_GRIDS, build_candidate, check_candidate_names, default_params
from segmentation.config import TUNE_SCORINGS
from segmentation.errors import ModelError
from segmentation.labelled import cap_rows, model_frame

logger = logging.getLogger(__name__)

SCORING: dict[str, str] = {"accuracy": "accuracy", "macro_f1": "f1_macro", "neg_log_loss": "neg_log_loss"}
COMPARISON_COLUMNS: tuple[str, ...] = (
    "name",
    "accuracy_mean",
    "accuracy_std",
    "macro_f1_mean",
    "macro_f1_std",
    "log_loss_mean",
    "log_loss_std",
    "fit_seconds",
    "predict_seconds",
    "model_bytes",
    "within_noise",
)


@dataclass(frozen=True)
class TuningOptions:
    """Successive-halving random search over PARAM_GRIDS of the chosen family: ``n_candidates`` settings
    sampled; each round keeps 1/``factor`` of them on ``factor`` times more rows, starting from
    ``min_resources`` rows; ranked by ``scoring`` (one of TUNE_SCORINGS)."""

    n_candidates: int = 12
    factor: int = 3
    min_resources: int = 500
    scoring: str = "neg_log_loss"

    def __post_init__(self) -> None:
        if self.scoring not in TUNE_SCORINGS:
            raise ModelError(f"tuning scoring {self.scoring!r} is not allowed; expected one of {list(TUNE_SCORINGS)}")


def check_folds(cv_folds: int) -> None:
    """ModelError unless ``cv_folds`` is an integer of at least 2."""
    if not isinstance(cv_folds, (int, np.integer)) or cv_folds < 2:
        raise ModelError(f"cv_folds={cv_folds!r} must be an integer >= 2")


def stratified_folds(cv_folds: int, random_state: int) -> StratifiedKFold:
    return StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=random_state)


def compare_candidates(
    X: pd.DataFrame,
    y: pd.Series,
    names: Sequence[str] | None = None,
    *,
    cv_folds: int = 5,
    random_state: int = 42,
    n_jobs: int | None = 1,
    row_cap: int | None = None,
) -> pd.DataFrame:
    """Cross-validate each candidate pipeline; one row per candidate, best first.

    Sorted by macro-F1 (descending), then log loss (ascending), then name. ``fit_seconds`` and
    ``predict_seconds`` are the mean fit and scoring times of one fold, ``model_bytes`` the mean pickled size
    of a fitted fold model. ``within_noise`` marks the candidates whose paired per-fold macro-F1 and log loss
    are within one standard error of the best's (the best included); :func:`choose_candidate` prefers the
    smallest of those. With ``row_cap``, the comparison uses
    a stratified subsample of that many rows.
    """
    chosen = check_candidate_names(names)
    check_folds(cv_folds)
    features, y = cap_rows(model_frame(X), y, row_cap, random_state)
    rows, folds = [], {}
    for name in chosen:
        pipeline = build_candidate(name, random_state)
        scores = cross_validate(
            pipeline,
            features,
            y,
            cv=stratified_folds(cv_folds, random_state),
            scoring=SCORING,
            n_jobs=n_jobs,
            error_score="raise",
            return_estimator=True,
        )
        folds[name] = (np.asarray(scores["test_macro_f1"]), -np.asarray(scores["test_neg_log_loss"]))
        row = {
            "name": name,
            "accuracy_mean": float(np.mean(scores["test_accuracy"])),
            "accuracy_std": float(np.std(scores["test_accuracy"])),
            "macro_f1_mean": float(np.mean(folds[name][0])),
            "macro_f1_std": float(np.std(folds[name][0])),
            "log_loss_mean": float(np.mean(folds[name][1])),
            "log_loss_std": float(np.std(folds[name][1])),
            "fit_seconds": float(np.mean(scores["fit_time"])),
            "predict_seconds": float(np.mean(scores["score_time"])),
            "model_bytes": int(np.mean([len(pickle.dumps(fitted)) for fitted in scores["estimator"]])),
        }
        logger.info(
            "candidate %s: macro-F1 %.4f, accuracy %.4f, log loss %.4f",
            name,
            row["macro_f1_mean"],
            row["accuracy_mean"],
            row["log_loss_mean"],
        )
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS[:-1]))
    table = table.sort_values(
        ["macro_f1_mean", "log_loss_mean", "name"], ascending=[False, True, True], kind="mergesort"
    ).reset_index(drop=True)
    best_f1, best_loss = folds[str(table.loc[0, "name"])]
    table["within_noise"] = [
        within_noise(best_f1 - folds[name][0]) and within_noise(folds[name][1] - best_loss) for name in table["name"]
    ]
    return table


def _fold_scores(
    pipeline: Pipeline,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    scoring: str,
    cv_folds: int,
    random_state: int,
    n_jobs: int | None,
) -> np.ndarray:
    scores = cross_validate(
        pipeline, X, y, cv=stratified_folds(cv_folds, random_state), scoring=scoring, n_jobs=n_jobs, error_score="raise"
    )
    return np.asarray(scores["test_score"])


def tuning_beats_defaults(
    name: str,
    tuned: Pipeline,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    scoring: str,
    cv_folds: int = 5,
    random_state: int = 42,
    n_jobs: int | None = 1,
) -> bool:
    """Whether ``tuned`` beats candidate ``name``'s default settings by more than noise on the same folds.

    Successive halving ranks settings on small subsamples and on one noisy score, so its winner is kept only
    when its paired per-fold gain in ``scoring`` over the defaults exceeds one standard error.
    """
    kwargs = {"scoring": scoring, "cv_folds": cv_folds, "random_state": random_state, "n_jobs": n_jobs}
    features = model_frame(X)
    gain = _fold_scores(clone(tuned), features, y, **kwargs) - _fold_scores(
        build_candidate(name, random_state), features, y, **kwargs
    )
    return not within_noise(gain)


def within_noise(shortfall: np.ndarray) -> bool:
    """Whether a mean paired shortfall (positive: worse) is at most one standard error of the differences."""
    if len(shortfall) < 2:
        return bool(np.mean(shortfall) <= 0)
    return bool(np.mean(shortfall) <= np.std(shortfall, ddof=1) / math.sqrt(len(shortfall)))


def choose_candidate(comparison: pd.DataFrame) -> str:
    """The smallest candidate (``model_bytes``) among those within noise of the best.

    Size rather than measured scoring time, so that the same data and seed always choose the same model.
    """
    close = comparison[comparison["within_noise"]]
    if close.empty:
        return str(comparison.loc[0, "name"])
    return str(close.sort_values(["model_bytes", "name"], kind="mergesort").iloc[0]["name"])


def _search_scorer(scoring: str, y: pd.Series) -> str | Callable[..., float]:
    """``scoring``, with log loss told every label: successive halving's first rounds test on small unstratified
    subsamples, which may miss a segment."""
    if scoring != "neg_log_loss":
        return scoring
    return make_scorer(log_loss, greater_is_better=False, response_method="predict_proba", labels=sorted(y.unique()))


def tune(
    name: str,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    cv_folds: int,
    random_state: int,
    n_jobs: int | None = 1,
    options: TuningOptions = TuningOptions(),
) -> HalvingRandomSearchCV:
    """Successive-halving random search of PARAM_GRIDS[name]; returns the fitted search, whose
    ``best_estimator_`` is refitted on all of ``X``."""
    check_candidate_names([name])
    check_folds(cv_folds)
    grid = PARAM_GRIDS[name]
    n_settings = math.prod(len(values) for values in grid.values())
    # Never below what every CV fold needs, never above one round below the full data.
    smallest = 2 * cv_folds * y.nunique()
    start = max(min(int(options.min_resources), len(X) // options.factor), smallest)
    search = HalvingRandomSearchCV(
        build_candidate(name, random_state),
        grid,
        n_candidates=min(int(options.n_candidates), n_settings),
        factor=options.factor,
        resource="n_samples",
        min_resources=min(start, len(X)),
        scoring=_search_scorer(options.scoring, y),
        cv=stratified_folds(cv_folds, random_state),
        refit=True,
        random_state=random_state,
        n_jobs=n_jobs,
        error_score="raise",
    )
    search.fit(model_frame(X), y)
    logger.info(
        "tuned %s: best %s %.4f with %s (%d settings, rounds on %s rows)",
        name,
        options.scoring,
        search.best_score_,
        search.best_params_,
        search.n_candidates_[0],
        search.n_resources_,
    )
    return search


@dataclass(frozen=True)
class TunedModel:
    """The chosen family fitted with the settings that won: tuned ones, or its defaults when tuning did not
    beat them by more than noise."""

    pipeline: Pipeline
    params: dict[str, object]
    tuned_over_defaults: bool
    cv_score: float
    cv_scoring: str


def tune_or_keep_defaults(
    name: str,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    cv_folds: int,
    options: TuningOptions = TuningOptions(),
    random_state: int,
    n_jobs: int | None = 1,
    check_row_cap: int | None = None,
) -> TunedModel:
    """Tune ``name`` on ``X``; keep the tuned settings only when they beat the defaults by more than noise
    (checked on a stratified subsample of ``check_row_cap`` rows). Either way, fitted on all of ``X``."""
    search = tune(name, X, y, cv_folds=cv_folds, random_state=random_state, n_jobs=n_jobs, options=options)
    pipeline, params = search.best_estimator_, dict(search.best_params_)
    defaults = default_params(name, random_state)
    if params != defaults:
        X_check, y_check = cap_rows(X, y, check_row_cap, random_state)
        if not tuning_beats_defaults(
            name,
            pipeline,
            X_check,
            y_check,
            scoring=options.scoring,
            cv_folds=cv_folds,
            random_state=random_state,
            n_jobs=n_jobs,
        ):
            logger.info("kept the default settings of %s: tuned %s is within noise of them", name, params)
            pipeline, params = build_candidate(name, random_state).fit(model_frame(X), y), defaults
    return TunedModel(
        pipeline=pipeline,
        params=params,
        tuned_over_defaults=params != defaults,
        cv_score=float(search.best_score_),
        cv_scoring=options.scoring,
    )
