"""Per-segment attribute distributions for the UI: the buckets, their counts from a rebuild's shards, and the
per-run recompute or carry-over into ``segment_distributions``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from segmentation.columns import ATTRIBUTE_COLUMNS, CATEGORICAL_COLUMNS, MISSING

log = logging.getLogger(__name__)


# Buckets of the per-segment attribute distributions shown in the UI. Numeric ones: exclusive upper bounds and
# labels (the last label takes the rest); family size is its whole number up to "6+". The SQL of the recompute
# and the pandas of the rebuild shards (``bucket_counts``) are both built from these, so they agree.
_NUMERIC_BOUNDS: dict[str, tuple[tuple[float, ...], tuple[str, ...]]] = {
    "age": ((25, 35, 45, 55, 65), ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")),
    "work_experience": ((1, 3, 6, 10), ("0", "1-2", "3-5", "6-9", "10+")),
}
_FAMILY_CAP = 6
NUMERIC_BUCKET_ORDER: dict[str, list[str]] = {
    **{c: [*labels, MISSING] for c, (_, labels) in _NUMERIC_BOUNDS.items()},
    "family_size": [*(str(n) for n in range(1, _FAMILY_CAP)), f"{_FAMILY_CAP}+", MISSING],
}
TOTAL_ATTRIBUTE = "_total"
# The attributes with distributions, in order.
DISTRIBUTION_ATTRIBUTES: tuple[str, ...] = tuple(
    c for c in ATTRIBUTE_COLUMNS if c in CATEGORICAL_COLUMNS or c in NUMERIC_BUCKET_ORDER
)


def _bucket_sql(column: str) -> str:
    """SQL of ``column``'s bucket label in ``customer_features AS f``."""
    if column in CATEGORICAL_COLUMNS:
        return f"coalesce(f.{column}, '{MISSING}')"
    if column == "family_size":
        return (
            f"CASE WHEN f.family_size IS NULL THEN '{MISSING}' WHEN f.family_size >= {_FAMILY_CAP} "
            f"THEN '{_FAMILY_CAP}+' ELSE f.family_size::int::text END"
        )
    bounds, labels = _NUMERIC_BOUNDS[column]
    whens = " ".join(f"WHEN f.{column} < {b} THEN '{label}'" for b, label in zip(bounds, labels, strict=False))
    return f"CASE WHEN f.{column} IS NULL THEN '{MISSING}' {whens} ELSE '{labels[-1]}' END"


def bucket_labels(values: pd.Series, column: str) -> np.ndarray:
    """Bucket labels of ``column``'s values, as ``_bucket_sql`` gives them in the database."""
    if column in CATEGORICAL_COLUMNS:
        return values.astype(object).where(values.notna(), MISSING).astype(str).to_numpy()
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    missing = np.isnan(numbers)
    if column == "family_size":
        # float4 -> int in PostgreSQL rounds half to even, as rint does.
        whole = np.where(missing, 0, np.rint(np.nan_to_num(numbers))).astype("int64").astype(str)
        labels = np.where(numbers >= _FAMILY_CAP, f"{_FAMILY_CAP}+", whole)
    else:
        bounds, names = _NUMERIC_BOUNDS[column]
        labels = np.asarray(names, dtype=object)[np.searchsorted(bounds, np.nan_to_num(numbers), side="right")]
    return np.where(missing, MISSING, labels).astype(str)


def bucket_counts(features: pd.DataFrame, segments: pd.Series | np.ndarray) -> dict[tuple[str, str, str], int]:
    """Customers per (segment, attribute, bucket) of a frame of features and its segments."""
    segment_codes, segment_names = pd.factorize(np.asarray(segments, dtype=str))
    counts: dict[tuple[str, str, str], int] = {}
    for column in DISTRIBUTION_ATTRIBUTES:
        codes, names = pd.factorize(bucket_labels(features[column], column))
        width = len(names)
        tally = np.bincount(segment_codes * width + codes, minlength=len(segment_names) * width)
        for flat in np.flatnonzero(tally):
            counts[(str(segment_names[flat // width]), column, str(names[flat % width]))] = int(tally[flat])
    return counts


def _distribution_sql() -> str:
    names = list(DISTRIBUTION_ATTRIBUTES)
    select = ",\n           ".join(f"{_bucket_sql(c)} AS b_{c}" for c in names)
    attribute = " ".join(f"WHEN GROUPING(b_{c}) = 0 THEN '{c}'" for c in names)
    sets = ", ".join(["(segment)", *(f"(segment, b_{c})" for c in names)])
    return f"""
INSERT INTO segmentation.segment_distributions (run_id, segment, attribute, bucket, customers)
SELECT %s, segment, CASE {attribute} ELSE '{TOTAL_ATTRIBUTE}' END,
       coalesce({", ".join(f"b_{c}" for c in names)}, ''), count(*)
FROM (SELECT s.segment,
           {select}
      FROM segmentation.customer_segments AS s
      LEFT JOIN segmentation.customer_features AS f USING (customer_id)) AS b
GROUP BY GROUPING SETS ({sets})
"""


# Attribute distributions are recomputed (one scan of customer_segments) after a full rescore, or once the
# customers scored since the last computation exceed this share of all customers; in between, a run carries
# the last computed buckets forward with its exact segment sizes, so a quiet night stays proportional to
# what changed.
DISTRIBUTION_REFRESH_SHARE = 0.05


def record_segment_distributions(cur: Any, run_id: str) -> dict[str, int]:
    """Customers per segment and attribute bucket after a run (one scan), for the UI; returns segment sizes."""
    cur.execute("DELETE FROM segmentation.segment_distributions WHERE run_id = %s", (run_id,))
    cur.execute(_distribution_sql(), (run_id,))
    cur.execute(
        """SELECT segment, customers FROM segmentation.segment_distributions
           WHERE run_id = %s AND attribute = %s ORDER BY segment""",
        (run_id, TOTAL_ATTRIBUTE),
    )
    return {segment: int(n) for segment, n in cur.fetchall()}


def _last_distributions(cur: Any, run_id: str) -> tuple[str, str, int] | None:
    """The latest earlier run with distributions: its id, the run they were computed in, customers scored since."""
    cur.execute(
        """SELECT r.run_id, r.steps->'finalise'->'distributions'
           FROM segmentation.pipeline_runs AS r
           WHERE r.run_id <> %s AND r.status = 'success'
             AND EXISTS (SELECT 1 FROM segmentation.segment_distributions AS d WHERE d.run_id = r.run_id)
           ORDER BY r.finished_at DESC NULLS LAST LIMIT 1""",
        (run_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    previous, info = row
    info = info or {}
    return previous, str(info.get("computed_in", previous)), int(info.get("scored_since", 0))


def _published_by_rebuild(cur: Any, run_id: str) -> bool:
    """Whether this run published a full rescore, whose publish wrote the run's distributions."""
    cur.execute(
        """SELECT p.mode = 'rebuild' AND p.published_at IS NOT NULL
                  AND EXISTS (SELECT 1 FROM segmentation.segment_distributions AS d WHERE d.run_id = p.run_id)
           FROM segmentation.scoring_plans AS p WHERE p.run_id = %s""",
        (run_id,),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def refresh_segment_distributions(cur: Any, run_id: str, *, counts: dict[str, int], scored: int) -> dict[str, Any]:
    """This run's ``segment_distributions``: written by its full rescore, recomputed, or carried forward.

    A run that published a full rescore has them already: the publish summed its shards' counts.
    Otherwise they are recomputed when no earlier run has them, or when the customers scored since they were
    computed exceed ``DISTRIBUTION_REFRESH_SHARE`` of all customers, and carried forward with exact segment
    sizes in between. Returns where they come from: ``computed_in`` (a run id) and ``scored_since`` (customers
    scored since then).
    """
    if _published_by_rebuild(cur, run_id):
        return {"computed_in": run_id, "scored_since": 0}
    last = _last_distributions(cur, run_id)
    total = sum(counts.values())
    stale = last is None or last[2] + scored > DISTRIBUTION_REFRESH_SHARE * max(total, 1)
    if stale:
        record_segment_distributions(cur, run_id)
        return {"computed_in": run_id, "scored_since": 0}
    previous, computed_in, scored_since = last
    cur.execute("DELETE FROM segmentation.segment_distributions WHERE run_id = %s", (run_id,))
    cur.execute(
        """INSERT INTO segmentation.segment_distributions (run_id, segment, attribute, bucket, customers)
           SELECT %s, segment, attribute, bucket, customers FROM segmentation.segment_distributions
           WHERE run_id = %s AND attribute <> %s""",
        (run_id, previous, TOTAL_ATTRIBUTE),
    )
    cur.executemany(
        """INSERT INTO segmentation.segment_distributions (run_id, segment, attribute, bucket, customers)
           VALUES (%s, %s, %s, '', %s)""",
        [(run_id, segment, TOTAL_ATTRIBUTE, n) for segment, n in sorted(counts.items()) if n > 0],
    )
    return {"computed_in": computed_in, "scored_since": scored_since + scored}
