"""Clean and features: validate new and changed customers into ``clean_customers`` (bad rows to quarantine),
then write their deterministic feature rows."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from segmentation import alerts, locks
from segmentation.cleaning import check_reject_share, reason_counts, validate
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, DERIVED_COLUMNS
from segmentation.config import Settings
from segmentation.errors import DataError, RejectThresholdExceeded
from segmentation.features import derived_columns_sql
from segmentation.loading import write_rejects
from segmentation.pgcopy import copy_binary_in, copy_frame_out
from segmentation.tasks.runs import analyze_if_bulk, step, take_queue, where

log = logging.getLogger(__name__)

CLEAN_TYPED_COLUMNS = [CUSTOMER_ID, *ATTRIBUTE_COLUMNS]
FEATURE_TABLE_COLUMNS = [*CLEAN_TYPED_COLUMNS, *DERIVED_COLUMNS]
NUMERIC_TEXT_COLUMNS = ["age", "work_experience", "family_size", *DERIVED_COLUMNS]


_CLEAN_CANDIDATES_SQL = f"""
SELECT c.customer_id, {", ".join(f"c.{col}" for col in ATTRIBUTE_COLUMNS)}, c.updated_at
FROM clean_taken AS t
JOIN segmentation.customers AS c USING (customer_id)
LEFT JOIN segmentation.clean_customers AS k USING (customer_id)
WHERE (k.customer_id IS NULL OR k.source_updated_at < c.updated_at)
  AND NOT EXISTS (SELECT 1 FROM segmentation.customer_rejects AS r
                  WHERE r.customer_id = c.customer_id AND r.source_updated_at = c.updated_at)
"""


def check_source_columns(cur: Any) -> None:
    """Fail with the column names when upstream renamed or dropped columns of ``customers``."""
    cur.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = 'segmentation' AND table_name = 'customers'"""
    )
    present = {row[0] for row in cur.fetchall()}
    missing = [c for c in (CUSTOMER_ID, *ATTRIBUTE_COLUMNS, "updated_at") if c not in present]
    if missing:
        extra = sorted(present - {CUSTOMER_ID, *ATTRIBUTE_COLUMNS, "updated_at"})
        raise DataError(
            f"segmentation.customers lacks columns {missing} (unexpected columns: {extra}); "
            f"expected {[CUSTOMER_ID, *ATTRIBUTE_COLUMNS, 'updated_at']}. Nothing was cleaned or scored."
        )


def clean(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Validate new and changed customers: clean rows to ``clean_customers``, bad rows to quarantine.

    Raises RejectThresholdExceeded, writing nothing, when too large a share of the batch is bad.
    """
    url, settings = where(url, settings)
    with step(run_id, "clean", url, settings) as (cur, figures):
        # One cleaner at a time: a second, overlapping run waits here and then finds nothing new.
        locks.xact_lock(cur, locks.CLEAN)
        check_source_columns(cur)
        taken = take_queue(cur, "clean_pending", "clean_taken")
        raw = copy_frame_out(cur, _CLEAN_CANDIDATES_SQL)
        result = validate(raw)
        try:
            check_reject_share(len(raw), result.rejects, settings.reject_threshold)
        except RejectThresholdExceeded as exc:
            alerts.raise_alert("batch_refused", str(exc), run_id=run_id, task_id="clean", url=url, settings=settings)
            raise
        clean_rows = result.clean.rename(columns={"updated_at": "source_updated_at"})
        cur.execute(
            "CREATE TEMP TABLE clean_stage (LIKE segmentation.clean_customers INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        copy_binary_in(cur, clean_rows, "clean_stage", [*CLEAN_TYPED_COLUMNS, "source_updated_at"])
        cols = ", ".join([*CLEAN_TYPED_COLUMNS, "source_updated_at"])
        cur.execute(
            f"""INSERT INTO segmentation.clean_customers ({cols}, cleaned_at, run_id)
                SELECT {cols}, now(), %s FROM clean_stage
                ON CONFLICT (customer_id) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in [*ATTRIBUTE_COLUMNS, "source_updated_at"])},
                cleaned_at = EXCLUDED.cleaned_at, run_id = EXCLUDED.run_id""",
            (run_id,),
        )
        rejects = result.rejects.rename(columns={"updated_at": "source_updated_at"})
        if not rejects.empty:
            # A customer whose latest row is invalid is no longer clean: drop its stale clean row.
            ids = [int(i) for i in rejects[CUSTOMER_ID]]
            cur.execute("DELETE FROM segmentation.customer_features WHERE customer_id = ANY(%s)", (ids,))
            cur.execute("DELETE FROM segmentation.clean_customers WHERE customer_id = ANY(%s)", (ids,))
        quarantined = write_rejects(cur, rejects, run_id)
        figures.update(
            rows=len(raw),
            queued=taken,
            clean=len(result.clean),
            rejected=quarantined,
            reasons=reason_counts(rejects),
            analyzed=analyze_if_bulk(cur, "clean_customers", len(clean_rows)),
        )
    return figures


# In id order, so that a bulk build lays the rows out as the shards read them (id ranges by primary key).
def _features_upsert_sql() -> str:
    derived = derived_columns_sql("k")
    columns = [*FEATURE_TABLE_COLUMNS, "source_updated_at"]
    return f"""
INSERT INTO segmentation.customer_features ({", ".join(columns)}, updated_at, run_id)
SELECT {", ".join(f"k.{c}" for c in CLEAN_TYPED_COLUMNS)}, {", ".join(derived[c] for c in DERIVED_COLUMNS)},
       k.source_updated_at, now(), %s
FROM features_taken AS t
JOIN segmentation.clean_customers AS k USING (customer_id)
LEFT JOIN segmentation.customer_features AS f USING (customer_id)
WHERE f.customer_id IS NULL OR f.source_updated_at IS DISTINCT FROM k.source_updated_at
ORDER BY customer_id
ON CONFLICT (customer_id) DO UPDATE SET
{", ".join(f"{c} = EXCLUDED.{c}" for c in columns[1:])}, updated_at = EXCLUDED.updated_at, run_id = EXCLUDED.run_id
"""


def typed_clean_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Types for clean rows read back as text."""
    out = frame.copy()
    out[CUSTOMER_ID] = out[CUSTOMER_ID].astype("int64")
    for column in (c for c in NUMERIC_TEXT_COLUMNS if c in out.columns):
        out[column] = pd.to_numeric(out[column]).astype("float64")
    return out


def build_features(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Write the deterministic feature columns of the clean customers queued as new or changed.

    One set-based statement in the database: no rows travel to Python and back.
    """
    url, settings = where(url, settings)
    with step(run_id, "features", url, settings) as (cur, figures):
        taken = take_queue(cur, "features_pending", "features_taken")
        cur.execute(_features_upsert_sql(), (run_id,))
        rows = cur.rowcount
        figures.update(rows=rows, queued=taken, analyzed=analyze_if_bulk(cur, "customer_features", rows))
    return figures


def labelled_features(cur: Any) -> pd.DataFrame:
    frame = copy_frame_out(
        cur,
        f"""SELECT {", ".join(f"f.{c}" for c in FEATURE_TABLE_COLUMNS)}, f.source_updated_at, l.segment
            FROM segmentation.customer_features AS f
            JOIN segmentation.customer_labels AS l USING (customer_id)
            ORDER BY f.customer_id""",
    )
    return typed_clean_frame(frame)
