"""Data-quality and drift figures per run, written to ``drift_metrics``."""

from __future__ import annotations

import logging
from typing import Any

from segmentation.columns import ATTRIBUTE_COLUMNS

log = logging.getLogger(__name__)

_MISSING_SQL = ", ".join(f"avg(({c} IS NULL)::int)" for c in ATTRIBUTE_COLUMNS)


def _put(cur: Any, run_id: str, metric: str, subject: str, value: float | None) -> None:
    cur.execute(
        """INSERT INTO segmentation.drift_metrics (run_id, metric, subject, value) VALUES (%s, %s, %s, %s)
           ON CONFLICT (run_id, metric, subject) DO UPDATE SET value = EXCLUDED.value, computed_at = now()""",
        (run_id, metric, subject, value),
    )


def record_run_metrics(cur: Any, run_id: str) -> dict[str, Any]:
    """Reject share, missing-value rates of this run's clean rows and current segment shares."""
    cur.execute(
        """SELECT (steps->'clean'->>'rows')::int, (steps->'clean'->>'rejected')::int
           FROM segmentation.pipeline_runs WHERE run_id = %s""",
        (run_id,),
    )
    row = cur.fetchone()
    rows, rejected = row or (None, None)
    reject_share = (rejected or 0) / rows if rows else 0.0
    _put(cur, run_id, "reject_share", "", reject_share)

    cur.execute(f"SELECT count(*), {_MISSING_SQL} FROM segmentation.clean_customers WHERE run_id = %s", (run_id,))
    cleaned, *missing = cur.fetchone()
    if cleaned:
        for column, rate in zip(ATTRIBUTE_COLUMNS, missing, strict=True):
            _put(cur, run_id, "missing_rate", column, float(rate))

    cur.execute(
        """SELECT segment, count(*)::float / sum(count(*)) OVER () FROM segmentation.customer_segments
           GROUP BY segment ORDER BY segment"""
    )
    shares = {segment: round(share, 4) for segment, share in cur.fetchall()}
    for segment, share in shares.items():
        _put(cur, run_id, "segment_share", segment, share)
    cur.execute("SELECT count(*) FROM segmentation.customer_segments WHERE run_id = %s", (run_id,))
    scored = int(cur.fetchone()[0])
    return {"reject_share": round(reject_share, 4), "scored_this_run": scored, "segment_shares": shares}
