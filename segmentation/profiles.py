"""Segment profiles: per segment, the numbers that describe its customers and a sentence built from them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from segmentation.columns import SEGMENT, SEGMENTS
from segmentation.errors import DataError
from segmentation.jsonsafe import json_safe

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
