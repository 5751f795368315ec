"""SQL of the transition and realised-quality views (bound parameters only; SELECT only, as the UI's login may).

A run's transitions are pre-counted per run in ``segment_transitions``. A period's matrix is computed here over
``segment_history`` in one query: each customer's segment as of a moment is their last history row before it,
found by ``DISTINCT ON`` over the table's key ``(customer_id, history_id)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from segmentation.ui.queries import _rows

# The realised-accuracy chart shows at most this many days, ending at the latest day with labels.
DAILY_DAYS = 180


def last_scoring_run(cur: Any) -> dict[str, Any] | None:
    """The latest finished scoring run (a successful run whose finalise step ran)."""
    rows = _rows(
        cur,
        """SELECT run_id, dag_id, finished_at, model_version FROM segmentation.pipeline_runs
           WHERE status = 'success' AND finished_at IS NOT NULL AND steps ? 'finalise'
           ORDER BY finished_at DESC LIMIT 1""",
    )
    return rows[0] if rows else None


def run(cur: Any, run_id: str) -> dict[str, Any] | None:
    """One pipeline run's row, or None."""
    rows = _rows(
        cur,
        """SELECT run_id, dag_id, status, finished_at, model_version FROM segmentation.pipeline_runs
           WHERE run_id = %s""",
        (run_id,),
    )
    return rows[0] if rows else None


def run_transitions(cur: Any, run_id: str) -> list[dict[str, Any]]:
    """A run's changed customers per (from segment, to segment, cause); from_segment None for a first scoring."""
    return _rows(
        cur,
        """SELECT from_segment, to_segment, cause, sum(customers)::bigint AS customers
           FROM segmentation.segment_transitions WHERE run_id = %s
           GROUP BY from_segment, to_segment, cause""",
        (run_id,),
    )


def period_transitions(cur: Any, start_before: datetime, end_before: datetime) -> list[dict[str, Any]]:
    """Customers per (segment as of ``start_before``, segment as of ``end_before``), for the customers that had a
    segment at both moments. A customer's segment as of a moment is their last ``segment_history`` row (by
    ``history_id``) with ``changed_at`` before it. Both sides read the history in the order of its key
    ``(customer_id, history_id)``, so each is one ordered pass and the join is a merge by customer."""
    return _rows(
        cur,
        """WITH at_start AS (
               SELECT DISTINCT ON (customer_id) customer_id, segment
               FROM segmentation.segment_history WHERE changed_at < %(start_before)s
               ORDER BY customer_id DESC, history_id DESC),
           at_end AS (
               SELECT DISTINCT ON (customer_id) customer_id, segment
               FROM segmentation.segment_history WHERE changed_at < %(end_before)s
               ORDER BY customer_id DESC, history_id DESC)
           SELECT at_start.segment AS from_segment, at_end.segment AS to_segment, count(*)::bigint AS customers
           FROM at_start JOIN at_end USING (customer_id)
           GROUP BY at_start.segment, at_end.segment""",
        {"start_before": start_before, "end_before": end_before},
    )


def realised_quality(cur: Any) -> list[dict[str, Any]]:
    """Realised quality per model version (late labels against the segments it gave), with its holdout
    accuracy and registry status; newest version first."""
    return _rows(
        cur,
        """SELECT q.model_version, q.labelled, q.accuracy, q.macro_f1, q.log_loss, q.window_start, q.window_end,
                  (m.metrics->>'accuracy')::float8 AS holdout_accuracy, m.status
           FROM segmentation.realised_quality AS q
           LEFT JOIN segmentation.model_versions AS m ON m.version = q.model_version
           ORDER BY q.model_version DESC""",
    )


def realised_quality_daily(cur: Any, days: int = DAILY_DAYS) -> list[dict[str, Any]]:
    """Realised quality per day and model version over the last ``days`` days with labels, oldest first."""
    return _rows(
        cur,
        """SELECT day, model_version, labelled, accuracy, macro_f1, log_loss
           FROM segmentation.realised_quality_daily
           WHERE day > (SELECT max(day) FROM segmentation.realised_quality_daily) - %s
           ORDER BY day, model_version""",
        (days,),
    )


def holdout_accuracy(cur: Any, versions: list[int]) -> dict[int, float | None]:
    """Each version's holdout accuracy from the registry (``metrics->>'accuracy'``)."""
    rows = _rows(
        cur,
        """SELECT version, (metrics->>'accuracy')::float8 AS accuracy FROM segmentation.model_versions
           WHERE version = ANY(%s)""",
        (versions,),
    )
    return {int(r["version"]): r["accuracy"] for r in rows}
