"""Segment profiles: per segment, the traits that most set it apart from the whole population, with numbers,
and a sentence built from them.

Effect sizes, so that columns of different kinds rank on one scale:
- numeric columns (age, work experience, family size): the standardised difference of means (Cohen's d:
  segment mean minus overall mean, over the overall standard deviation); the sentence quotes the medians;
- categories: Cohen's h of the segment's share against the overall share (2·asin√p − 2·asin√q); per column the
  value that sets the segment apart most, an over-represented one preferred; the sentence quotes both shares
  and, for professions, the ratio ("3.1× as common").
Traits whose effect is at least TRAIT_THRESHOLD (0.1, "small" on Cohen's scale) are kept, largest first, one per
column, at most MAX_TRAITS; when fewer than MIN_TRAITS pass it, the next largest fill up to MIN_TRAITS.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from segmentation.columns import SEGMENT, SEGMENTS
from segmentation.errors import DataError
from segmentation.jsonsafe import json_safe

NUMERIC_PROFILE_COLUMNS: tuple[str, ...] = ("age", "work_experience", "family_size")
CATEGORY_PROFILE_COLUMNS: tuple[str, ...] = (
    "ever_married",
    "graduated",
    "profession",
    "spending_score",
    "gender",
    "var_1",
)
PROFILE_COLUMNS: tuple[str, ...] = (*NUMERIC_PROFILE_COLUMNS, *CATEGORY_PROFILE_COLUMNS)
TRAIT_THRESHOLD = 0.1
MIN_TRAITS = 3
MAX_TRAITS = 5

# (word when the segment's mean is lower, word when higher, what the median measures)
NUMERIC_WORDS: dict[str, tuple[str, str, str]] = {
    "age": ("younger", "older", "median age"),
    "work_experience": ("less work experience", "more work experience", "median work experience"),
    "family_size": ("smaller families", "larger families", "median family size"),
}
CATEGORY_WORDS: dict[str, dict[str, str]] = {
    "ever_married": {"Yes": "married", "No": "unmarried"},
    "graduated": {"Yes": "graduates", "No": "without a degree"},
    "gender": {"Female": "women", "Male": "men"},
    "spending_score": {"Low": "low spenders", "Average": "average spenders", "High": "high spenders"},
    "profession": {
        "Artist": "artists",
        "Doctor": "doctors",
        "Engineer": "engineers",
        "Entertainment": "entertainment workers",
        "Executive": "executives",
        "Healthcare": "healthcare workers",
        "Homemaker": "homemakers",
        "Lawyer": "lawyers",
        "Marketing": "marketing workers",
    },
}


def cohens_d(segment: pd.Series, overall: pd.Series) -> float:
    """(segment mean − overall mean) / overall standard deviation; 0 when the overall values do not vary."""
    spread = float(overall.std(ddof=1)) if overall.notna().sum() > 1 else 0.0
    if not spread or segment.notna().sum() == 0:
        return 0.0
    return float((segment.mean() - overall.mean()) / spread)


def cohens_h(share: float, overall: float) -> float:
    """Cohen's h of two proportions: 2·asin(√share) − 2·asin(√overall)."""
    return 2.0 * math.asin(math.sqrt(share)) - 2.0 * math.asin(math.sqrt(overall))


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def numeric_trait(column: str, segment: pd.Series, overall: pd.Series) -> dict[str, Any] | None:
    """The trait of a numeric column: medians, Cohen's d, and its text."""
    seg = pd.to_numeric(segment, errors="coerce").astype("float64")
    allv = pd.to_numeric(overall, errors="coerce").astype("float64")
    if seg.notna().sum() == 0 or allv.notna().sum() == 0:
        return None
    effect = cohens_d(seg, allv)
    lower, higher, measure = NUMERIC_WORDS.get(column, (f"lower {column}", f"higher {column}", f"median {column}"))
    value, base = float(seg.median()), float(allv.median())
    if _number(value) == _number(base):  # equal medians: the means show the difference
        value, base, measure = float(seg.mean()), float(allv.mean()), measure.replace("median", "mean")
        text = f"{lower if effect < 0 else higher}: {measure} {value:.1f} against {base:.1f} overall"
    else:
        text = f"{lower if effect < 0 else higher}: {measure} {_number(value)} against {_number(base)} overall"
    return {"column": column, "kind": "numeric", "value": value, "overall": base, "effect": effect, "text": text}


def _category_text(column: str, value: str, share: float, overall: float) -> str:
    words = CATEGORY_WORDS.get(column, {}).get(value, f"{column.replace('_', ' ')} {value}")
    shares = f"{share * 100:.0f} % against {overall * 100:.0f} %"
    if column in ("profession", "var_1") and share >= overall and overall > 0:
        return f"{words}: {share / overall:.1f}× as common ({shares})"
    if share < overall:
        return f"fewer {words}: {shares}"
    return f"{words}: {shares}"


def category_trait(column: str, segment: pd.Series, overall: pd.Series) -> dict[str, Any] | None:
    """The trait of a category column: the value with the largest Cohen's h, an over-represented one preferred
    when its effect passes TRAIT_THRESHOLD. Shares are among non-missing values."""
    seg, allv = segment.dropna().astype(str), overall.dropna().astype(str)
    if seg.empty or allv.empty:
        return None
    seg_shares = seg.value_counts(normalize=True)
    all_shares = allv.value_counts(normalize=True)
    effects = {str(v): cohens_h(float(seg_shares.get(v, 0.0)), float(all_shares[v])) for v in sorted(all_shares.index)}
    over = {v: h for v, h in effects.items() if h >= TRAIT_THRESHOLD}
    pool = over or effects
    value = max(sorted(pool), key=lambda v: abs(pool[v]))
    share, base = float(seg_shares.get(value, 0.0)), float(all_shares[value])
    return {
        "column": column,
        "kind": "category",
        "value": value,
        "overall": base,
        "share": share,
        "effect": effects[value],
        "text": _category_text(column, value, share, base),
    }


def segment_traits(rows: pd.DataFrame, population: pd.DataFrame) -> list[dict[str, Any]]:
    """The segment's traits against the population, ranked by absolute effect, one per column: every trait at
    or above TRAIT_THRESHOLD (at most MAX_TRAITS), and at least MIN_TRAITS."""
    traits = [numeric_trait(c, rows[c], population[c]) for c in NUMERIC_PROFILE_COLUMNS]
    traits += [category_trait(c, rows[c], population[c]) for c in CATEGORY_PROFILE_COLUMNS]
    ranked = sorted((t for t in traits if t is not None), key=lambda t: (-abs(t["effect"]), t["column"]))
    strong = [t for t in ranked if abs(t["effect"]) >= TRAIT_THRESHOLD]
    return (strong if len(strong) >= MIN_TRAITS else ranked[:MIN_TRAITS])[:MAX_TRAITS]


def describe(segment: str, share: float, traits: list[dict[str, Any]]) -> str:
    """One sentence from a segment's share and traits."""
    head = f"Segment {segment} ({share * 100:.0f} % of customers)"
    return f"{head}: {'; '.join(t['text'] for t in traits)}." if traits else f"{head}."


def segment_profiles(df: pd.DataFrame, segment_col: str = SEGMENT) -> dict[str, dict[str, Any]]:
    """Per segment present (SEGMENTS order): ``n``, ``share``, ranked ``traits`` and a ``description``.

    Shares are over rows whose segment is one of SEGMENTS, which are also the population compared against.
    All values are plain JSON types.
    """
    needed = [segment_col, *PROFILE_COLUMNS]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"segment_profiles needs columns {needed}; missing {missing}")
    labels = df[segment_col].astype(object)
    valid = labels.isin(SEGMENTS)
    population = df.loc[valid]
    total = len(population)
    profiles: dict[str, dict[str, Any]] = {}
    for segment in SEGMENTS:
        rows = population.loc[labels[valid] == segment]
        if rows.empty:
            continue
        traits = segment_traits(rows, population)
        share = len(rows) / total
        profiles[segment] = json_safe(
            {"n": len(rows), "share": share, "description": describe(segment, share, traits), "traits": traits}
        )
    return profiles
