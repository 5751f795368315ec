"""Labelled training data: the model's input frame, checked labels, stratified caps and the stable holdout."""

from __future__ import annotations

import logging
import math

import pandas as pd
from sklearn.model_selection import train_test_split

from segmentation.columns import DERIVED_COLUMNS, MODEL_INPUT_COLUMNS, SEGMENT, SEGMENTS
from segmentation.errors import DataError
from segmentation.features import derive_features

logger = logging.getLogger(__name__)


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the derived columns, added when absent."""
    return frame if all(c in frame.columns for c in DERIVED_COLUMNS) else derive_features(frame)


def model_frame(X: pd.DataFrame) -> pd.DataFrame:
    """Return the model input columns of ``X`` (DataError naming the missing ones)."""
    missing = [c for c in MODEL_INPUT_COLUMNS if c not in X.columns]
    if missing:
        raise DataError(f"model input is missing columns {missing}; run derive_features on clean customers")
    return X.loc[:, list(MODEL_INPUT_COLUMNS)]


def labels_of(labelled: pd.DataFrame) -> pd.Series:
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


def check_class_counts(labels: pd.Series, *, cv_folds: int, holdout_share: float) -> None:
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


def cap_rows(
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


def holdout_mask(customer_ids: pd.Series, share: float) -> pd.Series:
    """A stable holdout by a hash of the id: the same customers are held out for every model version."""
    hashed = (customer_ids.astype("uint64") * 2654435761) % 2**32
    return hashed < int(share * 2**32)
