"""Derived feature columns, computed the same way in SQL (for the feature table) and in pandas (for CSV
training and single-customer prediction)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from segmentation.errors import DataError

SPENDING_RANKS: dict[str, int] = {"Low": 0, "Average": 1, "High": 2}
# Working life is assumed to start at 14; the denominator never drops below one year.
WORKING_AGE_START = 14


def _as_float(values: pd.Series) -> pd.Series:
    """Return ``values`` as float64 with NaN for every kind of missing (None, pd.NA, NaN)."""
    return pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index, name=values.name)


def derive_features(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` with the deterministic DERIVED_COLUMNS added.

    ``spending_rank``: Low=0, Average=1, High=2, NaN when missing or unknown.
    ``working_years_share``: work_experience / max(age - 14, 1) clipped to [0, 1], NaN if either is missing.
    """
    needed = ("spending_score", "age", "work_experience")
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise DataError(f"derive_features needs columns {list(needed)}; missing {absent}")
    out = df.copy()
    spending = df["spending_score"].astype(object)
    out["spending_rank"] = _as_float(spending.map(SPENDING_RANKS, na_action="ignore").astype(object))
    age = _as_float(df["age"])
    experience = _as_float(df["work_experience"])
    working_span = (age - WORKING_AGE_START).clip(lower=1.0)
    out["working_years_share"] = (experience / working_span).clip(lower=0.0, upper=1.0)
    return out


def derived_columns_sql(alias: str) -> dict[str, str]:
    """SQL expressions computing DERIVED_COLUMNS from the clean columns of table alias ``alias``, in the
    database, with the same values as :func:`derive_features`.

    ``work_experience`` is a ``real``; going through text gives the float64 value that pandas parses from the
    same column (the shortest decimal of the float4), not the exact widening of the float4.
    """
    ranks = " ".join(f"WHEN '{label}' THEN {rank}" for label, rank in SPENDING_RANKS.items())
    age, experience = f"{alias}.age", f"{alias}.work_experience::text::double precision"
    return {
        "spending_rank": f"CASE {alias}.spending_score {ranks} END",
        # LEAST and GREATEST skip NULLs, so a missing age or experience is tested first.
        "working_years_share": (
            f"CASE WHEN {age} IS NULL OR {alias}.work_experience IS NULL THEN NULL ELSE "
            f"LEAST(GREATEST({experience} / GREATEST({age} - {WORKING_AGE_START}, 1), 0), 1) END"
        ),
    }


# Model artifacts pickled before the scikit-learn preprocessing moved to segmentation.preprocessing refer to
# these names here; unpickling them must keep working.
_MOVED_TO_PREPROCESSING = frozenset({"RareCategoryGrouper", "as_object_with_nan", "as_float_with_nan"})


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_PREPROCESSING:
        from segmentation import preprocessing

        return getattr(preprocessing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
