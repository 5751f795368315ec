"""Model training: compare candidate classifiers with cross-validation, tune the best, evaluate on a holdout."""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (enables HalvingRandomSearchCV)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss
from sklearn.model_selection import HalvingRandomSearchCV, StratifiedKFold, cross_validate, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from segmentation.columns import DERIVED_COLUMNS, MODEL_INPUT_COLUMNS, SEGMENT, SEGMENTS
from segmentation.config import get_settings
from segmentation.errors import DataError, ModelError
from segmentation.features import ORDINAL_CATEGORICAL_MASK, build_pipeline, derive_features

logger = logging.getLogger(__name__)


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
CALIBRATION_BINS = 10

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
PROFILE_COLUMNS: tuple[str, ...] = (
    "age",
    "ever_married",
    "graduated",
    "profession",
    "spending_score",
    "family_size",
    "work_experience",
)
SPENDER_WORDS: dict[str, str] = {"Low": "low spenders", "Average": "average spenders", "High": "high spenders"}
PROFESSION_FIELDS: dict[str, str] = {
    "Artist": "the arts",
    "Doctor": "medicine",
    "Engineer": "engineering",
    "Entertainment": "entertainment",
    "Executive": "executive roles",
    "Healthcare": "healthcare",
    "Homemaker": "homemaking",
    "Lawyer": "law",
    "Marketing": "marketing",
}


@dataclass(frozen=True)
class TrainingResult:
    """A tuned pipeline fitted on the train split, with its holdout metrics and the candidate comparison."""

    pipeline: Pipeline
    model_name: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    comparison: list[dict[str, Any]]
    n_train: int
    n_holdout: int
    label_shares: dict[str, float]
    seconds: float


def json_safe(value: Any) -> Any:
    """Return ``value`` as plain JSON types: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        return [json_safe(v) for v in items]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None or isinstance(value, str):
        return value
    if pd.isna(value):
        return None
    return str(value)


def build_candidate(name: str, random_state: int) -> Pipeline:
    """The unfitted pipeline of candidate ``name`` (its preprocessing from CANDIDATE_ENCODINGS)."""
    _check_candidate_names([name])
    return build_pipeline(CANDIDATES[name](random_state), encoding=CANDIDATE_ENCODINGS.get(name, "one_hot"))


def _check_candidate_names(names: Sequence[str] | None) -> list[str]:
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


def _check_folds(cv_folds: int) -> None:
    if not isinstance(cv_folds, (int, np.integer)) or cv_folds < 2:
        raise ModelError(f"cv_folds={cv_folds!r} must be an integer >= 2")


def _model_frame(X: pd.DataFrame) -> pd.DataFrame:
    """Return the model input columns of ``X`` (DataError naming the missing ones)."""
    missing = [c for c in MODEL_INPUT_COLUMNS if c not in X.columns]
    if missing:
        raise DataError(f"model input is missing columns {missing}; run derive_features on clean customers")
    return X.loc[:, list(MODEL_INPUT_COLUMNS)]


def _cv(cv_folds: int, random_state: int) -> StratifiedKFold:
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
    chosen = _check_candidate_names(names)
    _check_folds(cv_folds)
    features, y = _cap_rows(_model_frame(X), y, row_cap, random_state)
    rows, folds = [], {}
    for name in chosen:
        pipeline = build_candidate(name, random_state)
        scores = cross_validate(
            pipeline,
            features,
            y,
            cv=_cv(cv_folds, random_state),
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
        _within_noise(best_f1 - folds[name][0]) and _within_noise(folds[name][1] - best_loss) for name in table["name"]
    ]
    return table


def default_params(name: str, random_state: int = 42) -> dict[str, Any]:
    """The untuned values, in candidate ``name``'s pipeline, of the parameters PARAM_GRIDS[name] searches."""
    params = build_candidate(name, random_state).get_params()
    return {key: params[key] for key in PARAM_GRIDS[name]}


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
        pipeline, X, y, cv=_cv(cv_folds, random_state), scoring=scoring, n_jobs=n_jobs, error_score="raise"
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
    features = _model_frame(X)
    gain = _fold_scores(clone(tuned), features, y, **kwargs) - _fold_scores(
        build_candidate(name, random_state), features, y, **kwargs
    )
    return not _within_noise(gain)


def _within_noise(shortfall: np.ndarray) -> bool:
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


def _search(
    name: str,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    cv_folds: int,
    random_state: int,
    n_jobs: int | None,
    n_candidates: int | None = None,
    factor: int | None = None,
    min_resources: int | None = None,
    scoring: str | None = None,
) -> HalvingRandomSearchCV:
    """Successive-halving random search of PARAM_GRIDS[name]; None settings come from get_settings()."""
    _check_candidate_names([name])
    _check_folds(cv_folds)
    if None in (n_candidates, factor, min_resources, scoring):
        settings = get_settings()
        n_candidates = settings.tune_candidates if n_candidates is None else n_candidates
        factor = settings.tune_factor if factor is None else factor
        min_resources = settings.tune_min_resources if min_resources is None else min_resources
        scoring = settings.tune_scoring if scoring is None else scoring
    grid = PARAM_GRIDS[name]
    n_settings = math.prod(len(values) for values in grid.values())
    # Never below what every CV fold needs, never above one round below the full data.
    smallest = 2 * cv_folds * y.nunique()
    start = max(min(int(min_resources), len(X) // factor), smallest)
    search = HalvingRandomSearchCV(
        build_candidate(name, random_state),
        grid,
        n_candidates=min(int(n_candidates), n_settings),
        factor=factor,
        resource="n_samples",
        min_resources=min(start, len(X)),
        scoring=scoring,
        cv=_cv(cv_folds, random_state),
        refit=True,
        random_state=random_state,
        n_jobs=n_jobs,
        error_score="raise",
    )
    search.fit(_model_frame(X), y)
    logger.info(
        "tuned %s: best %s %.4f with %s (%d settings, rounds on %s rows)",
        name,
        scoring,
        search.best_score_,
        search.best_params_,
        search.n_candidates_[0],
        search.n_resources_,
    )
    return search


def tune(
    name: str,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    cv_folds: int = 5,
    random_state: int = 42,
    n_jobs: int | None = 1,
    n_candidates: int | None = None,
    factor: int | None = None,
    min_resources: int | None = None,
    scoring: str | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """Tune ``name`` over PARAM_GRIDS[name] (successive halving, settings from get_settings() when None).

    Returns the best pipeline refitted on all of ``X`` and its params.
    """
    search = _search(
        name,
        X,
        y,
        cv_folds=cv_folds,
        random_state=random_state,
        n_jobs=n_jobs,
        n_candidates=n_candidates,
        factor=factor,
        min_resources=min_resources,
        scoring=scoring,
    )
    return search.best_estimator_, dict(search.best_params_)


def _labels(labelled: pd.DataFrame) -> pd.Series:
    """Return the segment labels as str; DataError when absent, missing or outside SEGMENTS."""
    if SEGMENT not in labelled.columns:
        raise DataError(f"labelled data has no {SEGMENT!r} column; columns: {list(labelled.columns)}")
    labels = labelled[SEGMENT]
    n_missing = int(labels.isna().sum())
    if n_missing:
        raise DataError(f"{n_missing} labelled rows have no {SEGMENT!r}; allowed: {list(SEGMENTS)}")
    labels = labels.astype(str)
    bad = sorted(set(labels.unique()) - set(SEGMENTS))
    if bad:
        raise DataError(f"{SEGMENT!r} has values {bad[:10]} outside the allowed {list(SEGMENTS)}")
    return labels


def _check_class_counts(labels: pd.Series, *, cv_folds: int, holdout_share: float) -> None:
    """DataError unless there are >= 2 classes, each big enough for the holdout split and the CV folds."""
    counts = labels.value_counts()
    if len(counts) < 2:
        raise DataError(f"need at least 2 segments to train; found only {sorted(counts.index.tolist())}")
    needed = max(math.ceil(cv_folds / (1.0 - holdout_share)) + 1, math.ceil(1.0 / holdout_share) + 1)
    small = {str(k): int(v) for k, v in counts.items() if v < needed}
    if small:
        raise DataError(
            f"too few rows per segment for holdout_share={holdout_share} and cv_folds={cv_folds}: "
            f"{small}; need at least {needed} each"
        )


def _cap_rows(
    data: pd.DataFrame, labels: pd.Series, row_cap: int | None, random_state: int
) -> tuple[pd.DataFrame, pd.Series]:
    """Deterministic stratified subsample to ``row_cap`` rows (unchanged when already small enough)."""
    if row_cap is None or len(data) <= row_cap:
        return data, labels
    kept, _, kept_labels, _ = train_test_split(
        data, labels, train_size=row_cap, stratify=labels, random_state=random_state
    )
    logger.info("subsampled %d labelled rows to %d (stratified)", len(data), len(kept))
    return kept, kept_labels


def evaluate(pipeline: Pipeline, labelled: pd.DataFrame) -> dict[str, Any]:
    """Metrics of a fitted pipeline on labelled customers (derived columns added when absent)."""
    if not all(c in labelled.columns for c in DERIVED_COLUMNS):
        labelled = derive_features(labelled)
    return json_safe(_evaluate(pipeline, _model_frame(labelled), _labels(labelled)))


def calibration_errors(
    y: Sequence[object] | pd.Series, proba: np.ndarray, classes: Sequence[object], bins: int = CALIBRATION_BINS
) -> dict[str, float]:
    """Expected calibration error of each class's probability (one-vs-rest, ``bins`` equal-width bins).

    ECE = sum over bins of (share of rows in the bin) * |mean predicted probability - observed frequency|.
    """
    truth = np.asarray(y, dtype=object)
    edges = np.linspace(0.0, 1.0, bins + 1)
    errors = {}
    for position, label in enumerate(classes):
        p = np.asarray(proba[:, position], dtype="float64")
        hit = (truth == label).astype("float64")
        which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
        counts = np.bincount(which, minlength=bins)
        gap = np.abs(np.bincount(which, weights=p, minlength=bins) - np.bincount(which, weights=hit, minlength=bins))
        errors[str(label)] = float(gap.sum() / max(counts.sum(), 1))
    return errors


def brier_score(y: Sequence[object] | pd.Series, proba: np.ndarray, classes: Sequence[object]) -> float:
    """Multi-class Brier score: mean over rows of the summed squared error of the class probabilities."""
    truth = np.asarray(y, dtype=object)[:, None] == np.asarray(classes, dtype=object)[None, :]
    return float(np.mean(np.sum((proba - truth) ** 2, axis=1)))


def predict_rows_per_second(pipeline: Pipeline, X: pd.DataFrame, *, min_rows: int = 20_000) -> float:
    """Rows per second of ``pipeline.predict_proba`` on ``X`` (repeated to at least ``min_rows`` rows)."""
    if X.empty:
        return float("nan")
    batch = X if len(X) >= min_rows else X.iloc[np.resize(np.arange(len(X)), min_rows)]
    started = time.perf_counter()
    pipeline.predict_proba(batch)
    return float(len(batch) / max(time.perf_counter() - started, 1e-9))


def _evaluate(pipeline: Pipeline, X: pd.DataFrame, y: pd.Series) -> dict[str, Any]:
    """Holdout metrics: accuracy, macro-F1, log loss, confusion matrix (SEGMENTS order), per-class F1,
    multi-class Brier score and per-class expected calibration error (ECE) with its mean."""
    proba = pipeline.predict_proba(X)
    classes = [str(c) for c in pipeline.classes_]
    ece = calibration_errors(y.astype(str), proba, classes)
    predicted = pipeline.classes_[np.argmax(proba, axis=1)]
    present = [s for s in SEGMENTS if s in classes]
    per_class = f1_score(y, predicted, labels=present, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, labels=present, average="macro", zero_division=0)),
        "log_loss": float(log_loss(y, proba, labels=pipeline.classes_)),
        "confusion_labels": list(SEGMENTS),
        "confusion_matrix": confusion_matrix(y, predicted, labels=list(SEGMENTS)).tolist(),
        "per_class_f1": {label: float(score) for label, score in zip(present, per_class, strict=True)},
        "brier": brier_score(y.astype(str), proba, classes),
        "ece_mean": float(np.mean(list(ece.values()))),
        "ece_per_class": ece,
    }


def train_model(
    labelled: pd.DataFrame,
    *,
    candidates: Sequence[str] | None = None,
    cv_folds: int = 5,
    holdout_share: float = 0.2,
    row_cap: int | None = None,
    random_state: int = 42,
    n_jobs: int | None = 1,
    holdout: pd.DataFrame | None = None,
    compare_row_cap: int | None = None,
    tune_candidates: int | None = None,
    tune_factor: int | None = None,
    tune_min_resources: int | None = None,
    tune_scoring: str | None = None,
) -> TrainingResult:
    """Compare candidates with CV on a stratified train split, tune the best, evaluate on the holdout.

    ``labelled`` holds clean customers with a ``segment`` column; derived columns are added when absent.
    When ``holdout`` is given, all of ``labelled`` is the train split and ``holdout`` is evaluated instead
    of a random split (the pipeline passes a stable holdout so that model versions compare fairly).
    The returned pipeline is fitted on the train split only, so its holdout metrics are honest.
    ``compare_row_cap`` and the ``tune_*`` arguments default (None) to the settings of the same names
    (``SEGMENTATION_COMPARE_ROW_CAP``, ``SEGMENTATION_TUNE_*``). ``metrics["predict_rows_per_s"]`` is the
    measured ``predict_proba`` throughput (a timing, so the only metric that differs between equal runs).
    """
    started = time.perf_counter()
    names = _check_candidate_names(candidates)
    _check_folds(cv_folds)
    if not 0.0 < holdout_share < 1.0:
        raise ModelError(f"holdout_share={holdout_share!r} must be between 0 and 1 (exclusive)")
    if row_cap is not None and row_cap < 2:
        raise ModelError(f"row_cap={row_cap!r} must be None or an integer >= 2")

    labels = _labels(labelled)
    _check_class_counts(labels, cv_folds=cv_folds, holdout_share=holdout_share)
    data, labels = _cap_rows(labelled, labels, row_cap, random_state)
    _check_class_counts(labels, cv_folds=cv_folds, holdout_share=holdout_share)
    if not all(c in data.columns for c in DERIVED_COLUMNS):
        data = derive_features(data)
    features = _model_frame(data)

    if holdout is None:
        X_train, X_holdout, y_train, y_holdout = train_test_split(
            features, labels, test_size=holdout_share, stratify=labels, random_state=random_state
        )
    else:
        X_train, y_train = features, labels
        y_holdout = _labels(holdout)
        X_holdout = _model_frame(
            holdout if all(c in holdout.columns for c in DERIVED_COLUMNS) else derive_features(holdout)
        )
    logger.info("training on %d rows, holdout %d rows, candidates %s", len(X_train), len(X_holdout), names)
    if compare_row_cap is None:
        compare_row_cap = get_settings().compare_row_cap
    comparison = compare_candidates(
        X_train,
        y_train,
        names,
        cv_folds=cv_folds,
        random_state=random_state,
        n_jobs=n_jobs,
        row_cap=compare_row_cap,
    )
    best_name = choose_candidate(comparison)
    if best_name != comparison.loc[0, "name"]:
        logger.info("chose %s: within noise of %s and smaller", best_name, comparison.loc[0, "name"])
    search = _search(
        best_name,
        X_train,
        y_train,
        cv_folds=cv_folds,
        random_state=random_state,
        n_jobs=n_jobs,
        n_candidates=tune_candidates,
        factor=tune_factor,
        min_resources=tune_min_resources,
        scoring=tune_scoring,
    )
    pipeline, params = search.best_estimator_, dict(search.best_params_)
    defaults = default_params(best_name, random_state)
    if params != defaults:
        X_check, y_check = _cap_rows(X_train, y_train, compare_row_cap, random_state)
        if not tuning_beats_defaults(
            best_name,
            pipeline,
            X_check,
            y_check,
            scoring=str(search.scoring),
            cv_folds=cv_folds,
            random_state=random_state,
            n_jobs=n_jobs,
        ):
            logger.info("kept the default settings of %s: tuned %s is within noise of them", best_name, params)
            pipeline, params = build_candidate(best_name, random_state).fit(X_train, y_train), defaults
    metrics = _evaluate(pipeline, X_holdout, y_holdout)
    metrics["cv_score"] = float(search.best_score_)
    metrics["cv_scoring"] = str(search.scoring)
    metrics["tuned_over_defaults"] = params != defaults
    metrics["predict_rows_per_s"] = predict_rows_per_second(pipeline, X_holdout)
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
        pipeline=pipeline,
        model_name=best_name,
        params=json_safe(params),
        metrics=json_safe(metrics),
        comparison=json_safe(comparison.to_dict(orient="records")),
        n_train=len(X_train),
        n_holdout=len(X_holdout),
        label_shares={s: float(shares.get(s, 0.0)) for s in SEGMENTS},
        seconds=float(seconds),
    )


def _most_common(values: pd.Series) -> tuple[str | None, float | None]:
    """Most frequent non-missing value (ties broken alphabetically) and its share among non-missing."""
    present = values.dropna().astype(str)
    if present.empty:
        return None, None
    counts = present.value_counts().sort_index().sort_values(ascending=False, kind="mergesort")
    return str(counts.index[0]), float(counts.iloc[0] / len(present))


def _median(values: pd.Series) -> float | None:
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    return None if numbers.notna().sum() == 0 else float(numbers.median())


def _share_yes(values: pd.Series) -> float | None:
    present = values.dropna().astype(str)
    return None if present.empty else float((present == "Yes").mean())


def _describe(segment: str, profile: Mapping[str, Any]) -> str:
    """One plain-English sentence built from a segment profile's numbers."""
    parts = []
    if profile["median_age"] is not None:
        parts.append(f"typically {profile['median_age']:.0f} years old")
    if profile["share_married"] is not None:
        parts.append("mostly married" if profile["share_married"] >= 0.5 else "mostly unmarried")
    if profile["share_graduated"] is not None:
        parts.append("mostly graduates" if profile["share_graduated"] >= 0.5 else "mostly without a degree")
    if profile["top_profession"] is not None:
        field = PROFESSION_FIELDS.get(profile["top_profession"], profile["top_profession"])
        parts.append(f"often in {field}")
    if profile["top_spending_score"] is not None:
        parts.append(SPENDER_WORDS.get(profile["top_spending_score"], f"{profile['top_spending_score']} spenders"))
    if profile["median_family_size"] is not None:
        parts.append(f"family of {profile['median_family_size']:.0f}")
    head = f"Segment {segment} ({profile['share'] * 100:.0f} % of customers)"
    return f"{head}: {', '.join(parts)}." if parts else f"{head}."


def segment_profiles(df: pd.DataFrame, segment_col: str = SEGMENT) -> dict[str, dict[str, Any]]:
    """Describe each segment present (in SEGMENTS order) from the data, with a one-sentence summary.

    Shares are over rows whose segment is one of SEGMENTS; other attribute shares are among non-missing
    values of that segment. All values are plain JSON types (None when a value cannot be computed).
    """
    needed = [segment_col, *PROFILE_COLUMNS]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"segment_profiles needs columns {needed}; missing {missing}")
    labels = df[segment_col].astype(object)
    valid = labels.isin(SEGMENTS)
    total = int(valid.sum())
    profiles: dict[str, dict[str, Any]] = {}
    for segment in SEGMENTS:
        rows = df.loc[valid & (labels == segment)]
        if rows.empty:
            continue
        profession, profession_share = _most_common(rows["profession"])
        spending, _ = _most_common(rows["spending_score"])
        profile: dict[str, Any] = {
            "n": len(rows),
            "share": len(rows) / total,
            "median_age": _median(rows["age"]),
            "share_married": _share_yes(rows["ever_married"]),
            "share_graduated": _share_yes(rows["graduated"]),
            "top_profession": profession,
            "top_profession_share": profession_share,
            "top_spending_score": spending,
            "median_family_size": _median(rows["family_size"]),
            "median_work_experience": _median(rows["work_experience"]),
        }
        profile["description"] = _describe(segment, profile)
        profiles[segment] = json_safe(profile)
    return profiles
