"""The SQL of the alerts page: the latest rows of ``segmentation.alerts`` (read only, bound parameters only)."""

from __future__ import annotations

from typing import Any

from segmentation.ui.queries import _rows


def latest_alerts(cur: Any, kind: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts (of ``kind`` when given), newest first. An ``approval_pending`` alert whose
    version still awaits approval in that run carries ``awaiting_approval``, ``review_run_id`` and
    ``review_dag_id`` (what ``content.review_path`` needs)."""
    return _rows(
        cur,
        """SELECT a.alert_id, a.raised_at, a.kind, a.dag_id, a.run_id, a.task_id, a.message, a.delivered,
                  a.delivery, a.details->>'version' AS version,
                  (v.version IS NOT NULL) AS awaiting_approval, v.review_run_id, r.dag_id AS review_dag_id
           FROM segmentation.alerts AS a
           LEFT JOIN segmentation.model_versions AS v
                  ON a.kind = 'approval_pending' AND v.version::text = a.details->>'version'
                 AND v.review_run_id = a.run_id AND v.reviewed_by IS NULL AND v.status = 'candidate'
           LEFT JOIN segmentation.pipeline_runs AS r ON r.run_id = v.review_run_id
           WHERE %(kind)s::text IS NULL OR a.kind = %(kind)s
           ORDER BY a.raised_at DESC, a.alert_id DESC
           LIMIT %(limit)s""",
        {"kind": kind, "limit": limit},  # type: ignore[arg-type]
    )
