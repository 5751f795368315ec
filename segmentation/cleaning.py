"""Validation rules with named reasons, normalisation of harmless variants, and the reject threshold."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segmentation.columns import (
    ALLOWED_CATEGORIES,
    ATTRIBUTE_COLUMNS,
    CATEGORICAL_COLUMNS,
    CUSTOMER_ID,
    NUMERIC_COLUMNS,
)
from segmentation.errors import DataError, RejectThresholdExceeded

log = logging.getLogger(__name__)

# Inclusive bounds of the numeric rules; the real data spans ages 18-89, experience 0-14, families 1-9.
AGE_RANGE = (18, 100)
WORK_EXPERIENCE_RANGE = (0, 60)
FAMILY_SIZE_RANGE = (1, 20)
WHOLE_NUMBER_COLUMNS = ("age", "family_size")
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})

# Every reason a row can be quarantined for. Loading adds the id reasons.
REASONS: dict[str, str] = {
    "missing_id": "the customer id is empty",
    "invalid_id": "the customer id is not a positive whole number",
    "duplicate_id_in_batch": "the same id appears again later in the same load; the last one wins",
    **{f"{c}_not_a_number": f"{c} is text that is not a number" for c in NUMERIC_COLUMNS},
    **{f"{c}_not_whole": f"{c} must be a whole number" for c in WHOLE_NUMBER_COLUMNS},
    "age_out_of_range": f"age must be within {AGE_RANGE[0]}..{AGE_RANGE[1]}",
    "work_experience_out_of_range": (
        f"work_experience must be within {WORK_EXPERIENCE_RANGE[0]}..{WORK_EXPERIENCE_RANGE[1]} years"
    ),
    "work_experience_exceeds_age": "work_experience is greater than age",
    "family_size_out_of_range": f"family_size must be within {FAMILY_SIZE_RANGE[0]}..{FAMILY_SIZE_RANGE[1]}",
    **{
        f"{c}_not_allowed": f"{c} must be one of {', '.join(ALLOWED_CATEGORIES[c])} (or empty)"
        for c in CATEGORICAL_COLUMNS
    },
}


@dataclass(frozen=True)
class ValidationResult:
    """Clean typed rows and quarantined rows (raw values plus every reason)."""

    clean: pd.DataFrame
    rejects: pd.DataFrame


def _text(values: pd.Series) -> pd.Series:
    """Strip whitespace and map the usual missing-value spellings to NA."""
    text = values.astype("object").where(values.notna(), None)
    stripped = text.map(lambda v: None if v is None else str(v).strip(), na_action="ignore")
    return stripped.map(lambda v: None if v.casefold() in MISSING_TOKENS else v, na_action="ignore")


def normalise_category(values: pd.Series, column: str) -> pd.Series:
    """Map whitespace and case variants to the canonical spelling; unknown values are kept as given."""
    canonical = {v.casefold(): v for v in ALLOWED_CATEGORIES[column]}
    text = _text(values)
    return text.map(lambda v: canonical.get(" ".join(v.split()).casefold(), v), na_action="ignore")


def _numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse numbers; returns the parsed floats and a mask of non-empty values that are not numbers."""
    text = _text(values)
    parsed = pd.to_numeric(text, errors="coerce").astype("float64")
    return parsed, text.notna() & parsed.isna()


def rule_masks(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Normalise ``raw`` and evaluate every rule; returns the normalised frame and one mask per reason."""
    missing = [c for c in (CUSTOMER_ID, *ATTRIBUTE_COLUMNS) if c not in raw.columns]
    if missing:
        raise DataError(f"customer rows lack columns {missing}; expected {[CUSTOMER_ID, *ATTRIBUTE_COLUMNS]}")
    out = pd.DataFrame(index=raw.index)
    out[CUSTOMER_ID] = raw[CUSTOMER_ID]
    masks: dict[str, pd.Series] = {}
    for column in NUMERIC_COLUMNS:
        out[column], masks[f"{column}_not_a_number"] = _numbers(raw[column])
    for column in WHOLE_NUMBER_COLUMNS:
        value = out[column]
        masks[f"{column}_not_whole"] = value.notna() & np.isfinite(value) & (value != np.floor(value))
    age, experience, family = out["age"], out["work_experience"], out["family_size"]
    masks["age_out_of_range"] = age.notna() & ~age.between(*AGE_RANGE)
    masks["work_experience_out_of_range"] = experience.notna() & ~experience.between(*WORK_EXPERIENCE_RANGE)
    masks["work_experience_exceeds_age"] = (
        experience.notna() & age.notna() & masks["age_out_of_range"].eq(False) & (experience > age)
    )
    masks["family_size_out_of_range"] = family.notna() & ~family.between(*FAMILY_SIZE_RANGE)
    for column in CATEGORICAL_COLUMNS:
        out[column] = normalise_category(raw[column], column)
        masks[f"{column}_not_allowed"] = out[column].notna() & ~out[column].isin(ALLOWED_CATEGORIES[column])
    return out[[CUSTOMER_ID, *ATTRIBUTE_COLUMNS]], masks


def collect_reasons(masks: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """One sorted list of reason names per row (empty for valid rows)."""
    reasons: list[list[str]] = [[] for _ in range(len(index))]
    for name in sorted(masks):
        for position in np.flatnonzero(masks[name].to_numpy(dtype=bool)):
            reasons[position].append(name)
    return pd.Series(reasons, index=index, dtype="object")


def raw_json(raw: pd.DataFrame, columns: Iterable[str]) -> pd.Series:
    """Each row's original values as a JSON object, for the quarantine table."""
    records = raw.loc[:, list(columns)].astype("object").where(raw.notna(), None).to_dict("records")
    # PostgreSQL's jsonb cannot hold NUL characters; U+FFFD marks where one was.
    scrubbed = [{k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in r.items()} for r in records]
    return pd.Series([json.dumps(r, ensure_ascii=False, default=str) for r in scrubbed], index=raw.index)


def validate(raw: pd.DataFrame) -> ValidationResult:
    """Split raw customer rows into clean typed rows and rejects with every reason.

    ``raw`` holds ``customer_id`` and the attribute columns as text, plus any pass-through columns
    (such as ``updated_at``), which are kept on both outputs.
    """
    normalised, masks = rule_masks(raw)
    reasons = collect_reasons(masks, raw.index)
    bad = reasons.map(bool).to_numpy(dtype=bool)
    extra = [c for c in raw.columns if c not in normalised.columns]

    clean = normalised.loc[~bad].copy()
    clean[CUSTOMER_ID] = pd.to_numeric(clean[CUSTOMER_ID]).astype("int64")
    clean["age"] = clean["age"].astype("Int16")
    for column in extra:
        clean[column] = raw.loc[~bad, column]

    rejects = pd.DataFrame(
        {
            CUSTOMER_ID: raw.loc[bad, CUSTOMER_ID],
            "raw": raw_json(raw.loc[bad], [CUSTOMER_ID, *ATTRIBUTE_COLUMNS]),
            "reasons": reasons[bad],
        }
    )
    for column in extra:
        rejects[column] = raw.loc[bad, column]
    return ValidationResult(clean=clean.reset_index(drop=True), rejects=rejects.reset_index(drop=True))


def reason_counts(rejects: pd.DataFrame) -> dict[str, int]:
    """How many rejected rows carry each reason."""
    return dict(Counter(r for reasons in rejects["reasons"] for r in reasons).most_common())


def check_reject_share(n_rows: int, rejects: pd.DataFrame, threshold: float) -> None:
    """Raise when the share of rejected rows is above ``threshold``; a clear message names the figures."""
    if n_rows == 0:
        return
    share = len(rejects) / n_rows
    if share > threshold:
        top = ", ".join(f"{k}={v}" for k, v in list(reason_counts(rejects).items())[:5])
        raise RejectThresholdExceeded(
            f"{len(rejects)} of {n_rows} rows ({share:.1%}) failed validation, above the allowed "
            f"{threshold:.1%} (SEGMENTATION_REJECT_THRESHOLD); nothing was written. Top reasons: {top}"
        )
