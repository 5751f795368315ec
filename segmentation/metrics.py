"""How good a fitted model is on labelled customers: accuracy, F1, log loss, calibration, confusion matrix."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, brier_score_loss, confusion_matrix, f1_score, log_loss
from sklearn.pipeline import Pipeline

from segmentation.columns import SEGMENTS
from segmentation.jsonsafe import json_safe
from segmentation.labelled import labels_of, model_frame, with_derived

CALIBRATION_BINS = 10


def evaluate(pipeline: Pipeline, labelled: pd.DataFrame) -> dict[str, Any]:
    """Metrics of a fitted pipeline on labelled customers (derived columns added when absent)."""
    return evaluate_with_rows(pipeline, labelled)[0]


def evaluate_with_rows(pipeline: Pipeline, labelled: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`evaluate`'s metrics and, row by row, the label, the predicted segment and the log loss (for a
    paired comparison of two models on the same customers, segmentation.gate.paired_test)."""
    labelled = with_derived(labelled)
    X, y = model_frame(labelled), labels_of(labelled)
    proba = pipeline.predict_proba(X)
    return json_safe(evaluate_frame(pipeline, X, y, proba=proba)), row_outcomes(pipeline.classes_, y, proba)


def row_outcomes(classes: Sequence[object], y: pd.Series, proba: np.ndarray) -> pd.DataFrame:
    """Per row: ``truth``, ``predicted`` (the most likely class) and ``loss``, minus the log of the probability
    given to the true class (clipped like scikit-learn's log_loss, whose mean it is)."""
    names = np.asarray([str(c) for c in classes], dtype=object)
    position = {name: i for i, name in enumerate(names)}
    columns = np.array([position.get(str(v), -1) for v in y])
    true_p = np.where(columns >= 0, proba[np.arange(len(columns)), np.maximum(columns, 0)], 0.0)
    eps = np.finfo(np.asarray(proba).dtype).eps
    return pd.DataFrame(
        {
            "truth": np.asarray(y, dtype=object).astype(str),
            "predicted": names[np.argmax(proba, axis=1)],
            "loss": -np.log(np.clip(true_p, eps, 1.0)),
        }
    )


def _class_bins(
    y: Sequence[object] | pd.Series, proba: np.ndarray, classes: Sequence[object], bins: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Per class (one-vs-rest, ``bins`` equal-width bins): rows, summed predicted probability and hits per bin."""
    truth = np.asarray(y, dtype=object)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for position, label in enumerate(classes):
        p = np.asarray(proba[:, position], dtype="float64")
        hit = (truth == label).astype("float64")
        which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
        yield (
            str(label),
            np.bincount(which, minlength=bins),
            np.bincount(which, weights=p, minlength=bins),
            np.bincount(which, weights=hit, minlength=bins),
        )


def calibration_errors(
    y: Sequence[object] | pd.Series, proba: np.ndarray, classes: Sequence[object], bins: int = CALIBRATION_BINS
) -> dict[str, float]:
    """Expected calibration error of each class's probability (one-vs-rest, ``bins`` equal-width bins).

    ECE = sum over bins of (share of rows in the bin) * |mean predicted probability - observed frequency|.
    """
    return {
        label: float(np.abs(predicted - observed).sum() / max(counts.sum(), 1))
        for label, counts, predicted, observed in _class_bins(y, proba, classes, bins)
    }


def reliability_bins(
    y: Sequence[object] | pd.Series, proba: np.ndarray, classes: Sequence[object], bins: int = CALIBRATION_BINS
) -> dict[str, dict[str, list[float]]]:
    """Per class, the reliability diagram: mean predicted probability, observed frequency and rows per
    non-empty bin (the same equal-width bins as :func:`calibration_errors`)."""
    out = {}
    for label, counts, predicted, observed in _class_bins(y, proba, classes, bins):
        used = counts > 0
        out[label] = {
            "predicted": (predicted[used] / counts[used]).round(4).tolist(),
            "observed": (observed[used] / counts[used]).round(4).tolist(),
            "rows": counts[used].tolist(),
        }
    return out


def brier_score(y: Sequence[object] | pd.Series, proba: np.ndarray, classes: Sequence[object]) -> float:
    """Multi-class Brier score: mean over rows of the summed squared error of the class probabilities.

    ``proba``'s columns are in the order of ``classes``; scikit-learn expects sorted labels, so they are
    reordered, and never halved for two classes, so that the score means the same for any number of classes.
    """
    names = [str(c) for c in classes]
    order = np.argsort(names, kind="stable")
    truth = np.asarray(y, dtype=object).astype(str)
    return float(
        brier_score_loss(truth, np.asarray(proba)[:, order], labels=[names[i] for i in order], scale_by_half=False)
    )


def predict_rows_per_second(pipeline: Pipeline, X: pd.DataFrame, *, min_rows: int = 20_000) -> float:
    """Rows per second of ``pipeline.predict_proba`` on ``X`` (repeated to at least ``min_rows`` rows)."""
    if X.empty:
        return float("nan")
    batch = X if len(X) >= min_rows else X.iloc[np.resize(np.arange(len(X)), min_rows)]
    started = time.perf_counter()
    pipeline.predict_proba(batch)
    return float(len(batch) / max(time.perf_counter() - started, 1e-9))


def evaluate_frame(
    pipeline: Pipeline, X: pd.DataFrame, y: pd.Series, *, proba: np.ndarray | None = None
) -> dict[str, Any]:
    """Holdout metrics: accuracy, macro-F1, log loss, confusion matrix (SEGMENTS order), per-class F1,
    multi-class Brier score and per-class expected calibration error (ECE) with its mean. ``proba``: the
    pipeline's probabilities for ``X`` when already computed."""
    proba = pipeline.predict_proba(X) if proba is None else proba
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
        "reliability": reliability_bins(y.astype(str), proba, classes),
    }
