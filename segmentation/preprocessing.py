"""The model's scikit-learn preprocessing: transformers, column transformers and ``build_pipeline``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder
from sklearn.utils.validation import check_is_fitted, validate_data

from segmentation.columns import MODEL_CATEGORICAL_COLUMNS, MODEL_NUMERIC_COLUMNS

logger = logging.getLogger(__name__)

RARE_GROUPED_COLUMNS: tuple[str, ...] = ("profession",)
MISSING_LABEL = "missing"
# Encodings for build_pipeline: "one_hot" (imputed, one-hot + min-max; any classifier) or "ordinal" (numeric
# columns as float with NaN, categories as integer codes with NaN for missing/unseen: for tree models with
# native categorical and missing-value support such as HistGradientBoostingClassifier).
# "own": no shared preprocessing, for ensembles whose members are whole pipelines with their own.
ENCODINGS: tuple[str, ...] = ("one_hot", "ordinal", "own")
# Boolean mask of the categorical columns in the "ordinal" preprocessor's output (numeric columns first).
ORDINAL_CATEGORICAL_MASK: tuple[bool, ...] = (
    *([False] * len(MODEL_NUMERIC_COLUMNS)),
    *([True] * len(MODEL_CATEGORICAL_COLUMNS)),
)


def _to_object_frame(X: object) -> pd.DataFrame:
    """Return ``X`` as an object-dtype DataFrame whose missing values are all ``np.nan``."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    frame = frame.astype(object)
    return frame.where(frame.notna(), np.nan)


def as_object_with_nan(X: object) -> pd.DataFrame:
    """Convert categorical input to object dtype with ``np.nan`` (SimpleImputer fails on ``pd.NA``)."""
    return _to_object_frame(X)


def as_float_with_nan(X: object) -> pd.DataFrame:
    """Convert numeric input (incl. nullable dtypes or objects holding ``pd.NA``) to float64 with NaN."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    return pd.DataFrame(frame.to_numpy(dtype="float64", na_value=np.nan), index=frame.index, columns=frame.columns)


class RareCategoryGrouper(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Replace categories rarer than ``min_share`` (learned at fit) and unseen ones by ``other_label``.

    Shares are computed among non-missing rows of each column; missing values stay missing (``np.nan``).
    """

    def __init__(self, min_share: float = 0.05, other_label: str = "Other") -> None:
        self.min_share = min_share
        self.other_label = other_label

    def fit(self, X: object, y: object = None) -> RareCategoryGrouper:
        """Learn, per column, the categories whose share among non-missing rows is >= ``min_share``."""
        if not 0.0 <= float(self.min_share) <= 1.0:
            raise ValueError(f"min_share must be in [0, 1]; got {self.min_share!r}")
        frame = self._validated(X, reset=True)
        self.categories_: dict[str, list[object]] = {}
        for name, (_, column) in zip(self._column_names(), frame.items(), strict=True):
            shares = column.dropna().value_counts(normalize=True)
            kept = shares[shares >= self.min_share].index.tolist()
            self.categories_[name] = sorted(kept, key=str)
        logger.debug("RareCategoryGrouper kept %s", self.categories_)
        return self

    def transform(self, X: object) -> np.ndarray:
        """Map categories not kept at fit (including unseen ones) to ``other_label``; keep missing."""
        check_is_fitted(self, "categories_")
        frame = self._validated(X, reset=False)
        out = frame.copy()
        for position, name in enumerate(self._column_names()):
            column = frame.iloc[:, position]
            rare = column.notna() & ~column.isin(self.categories_[name])
            out.iloc[:, position] = column.mask(rare, self.other_label)
        return out.to_numpy(dtype=object)

    def _validated(self, X: object, *, reset: bool) -> pd.DataFrame:
        """Check shape and feature names (sklearn contract); return an object frame with NaN for missing."""
        if isinstance(X, pd.DataFrame):
            X = _to_object_frame(X)
        array = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=reset)
        return _to_object_frame(array)

    def _column_names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return [str(n) for n in names]
        return [f"x{i}" for i in range(self.n_features_in_)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        return tags


def _categorical_steps(*, group_rare: bool) -> list[tuple[str, object]]:
    steps: list[tuple[str, object]] = [
        ("as_object", FunctionTransformer(as_object_with_nan, feature_names_out="one-to-one"))
    ]
    if group_rare:
        steps.append(("group_rare", RareCategoryGrouper()))
    steps += [
        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_LABEL)),
        ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
    ]
    return steps


def build_preprocessor() -> ColumnTransformer:
    """Build the (unfitted) preprocessing step; input columns are selected by name, others dropped.

    Expects the output of :func:`derive_features` (MODEL_INPUT_COLUMNS); returns a dense array.
    """
    # Missing values are imputed here so every customer is scored. KNNImputer is not used: it would
    # have to keep and search the whole training set for every scored row.
    numeric = Pipeline(
        [
            ("as_float", FunctionTransformer(as_float_with_nan, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", MinMaxScaler()),
        ]
    )
    plain_categorical = [c for c in MODEL_CATEGORICAL_COLUMNS if c not in RARE_GROUPED_COLUMNS]
    return ColumnTransformer(
        [
            ("numeric", numeric, list(MODEL_NUMERIC_COLUMNS)),
            ("profession", Pipeline(_categorical_steps(group_rare=True)), list(RARE_GROUPED_COLUMNS)),
            ("categorical", Pipeline(_categorical_steps(group_rare=False)), plain_categorical),
        ],
        remainder="drop",
        sparse_threshold=0.0,
        verbose_feature_names_out=True,
    )


def build_ordinal_preprocessor() -> ColumnTransformer:
    """Build the (unfitted) preprocessing for native-categorical tree models; columns selected by name.

    Output: MODEL_NUMERIC_COLUMNS as float64 (NaN kept), then MODEL_CATEGORICAL_COLUMNS as integer codes
    (categories sorted, learned at fit) with NaN for missing and unseen values; see ORDINAL_CATEGORICAL_MASK.
    No imputation: the classifier routes missing values itself.
    """
    categorical = Pipeline(
        [
            ("as_object", FunctionTransformer(as_object_with_nan, feature_names_out="one-to-one")),
            (
                "ordinal",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    dtype=np.float64,
                ),
            ),
        ]
    )
    return ColumnTransformer(
        [
            (
                "numeric",
                FunctionTransformer(as_float_with_nan, feature_names_out="one-to-one"),
                list(MODEL_NUMERIC_COLUMNS),
            ),
            ("categorical", categorical, list(MODEL_CATEGORICAL_COLUMNS)),
        ],
        remainder="drop",
        sparse_threshold=0.0,
        verbose_feature_names_out=True,
    )


def build_pipeline(classifier: ClassifierMixin, *, encoding: str = "one_hot") -> Pipeline:
    """Return ``Pipeline([features, classifier])``; feed it :func:`derive_features` output.

    ``encoding`` is one of ENCODINGS: "one_hot" (:func:`build_preprocessor`), "ordinal"
    (:func:`build_ordinal_preprocessor`) or "own" (none: the classifier's members preprocess themselves).
    """
    if encoding == "one_hot":
        features = build_preprocessor()
    elif encoding == "ordinal":
        features = build_ordinal_preprocessor()
    elif encoding == "own":
        features = "passthrough"
    else:
        raise ValueError(f"encoding must be one of {ENCODINGS}; got {encoding!r}")
    return Pipeline([("features", features), ("classifier", classifier)])
