"""Approval before promotion in the task layer: hold a challenger that passed the gate for a person's decision,
with the body they read, and raise the alert that a decision is pending (``tasks.approval`` records it).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from segmentation import alerts, registry, review
from segmentation.columns import CUSTOMER_ID
from segmentation.config import REVIEW_TASK_ID, Settings
from segmentation.scoring import FEATURE_COLUMNS_SQL, read_features

log = logging.getLogger(__name__)

# Scored customers whose segment today is compared with the challenger's (a fixed sample, by id hash).
SHARE_SAMPLE_ROWS = 5000
_SAMPLE_SQL = f"""SELECT {FEATURE_COLUMNS_SQL}, s.segment AS current_segment
FROM segmentation.customer_features AS f JOIN segmentation.customer_segments AS s USING (customer_id)
ORDER BY hashint8(f.customer_id), f.customer_id LIMIT %s"""


def share_moves(cur: Any, model: Any, rows: int = SHARE_SAMPLE_ROWS) -> pd.DataFrame | None:
    """How the segment shares of a fixed sample of scored customers would move with ``model``; None when no
    customer is scored yet."""
    from segmentation.predict import predict_frame

    sample = read_features(cur, _SAMPLE_SQL, (rows,))
    if sample.empty:
        return None
    proposed = predict_frame(model, sample).set_index(CUSTOMER_ID)["segment"]
    current = sample.set_index(CUSTOMER_ID)["current_segment"]
    return review.share_moves(current, proposed.reindex(current.index))


def _profiles(cur: Any, version: int | None) -> dict[str, Any] | None:
    if version is None:
        return None
    cur.execute("SELECT profiles FROM segmentation.model_versions WHERE version = %s", (version,))
    row = cur.fetchone()
    return row[0] if row else None


def hold_for_review(
    cur: Any,
    run_id: str,
    version: int,
    *,
    champion_version: int | None,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    reason: str,
    holdout_rows: int,
    settings: Settings,
    key: bytes,
) -> str:
    """Leave ``version`` a candidate awaiting approval (in the caller's transaction); returns the review body."""
    model = registry.load_model(cur, version, settings.model_cache_dir, key=key)
    body = review.review_body(
        version=version,
        champion_version=champion_version,
        reason=reason,
        challenger=challenger,
        champion=champion,
        moves=share_moves(cur, model),
        changes=review.profile_changes(_profiles(cur, champion_version), _profiles(cur, version) or {}),
        holdout_rows=holdout_rows,
    )
    cur.execute(
        """UPDATE segmentation.model_versions
           SET review_run_id = %s, reviewed_by = NULL, review_comment = NULL, reviewed_at = NULL,
               notes = concat_ws('; ', notes, %s)
           WHERE version = %s AND status = 'candidate'""",
        (run_id, f"awaiting approval (run {run_id}): {reason}", version),
    )
    return body


def announce_pending(run_id: str, version: int, *, url: str, settings: Settings) -> None:
    """The ``approval_pending`` alert: who must decide what, and where."""
    alerts.raise_alert(
        "approval_pending",
        f"model version {version} passed the gate and awaits approval (run {run_id}): approve or reject it in "
        f"Airflow's Required actions (task {REVIEW_TASK_ID!r} of segmentation_retrain) or promote it from the "
        f"models page; a review unanswered for {settings.approval_timeout_hours:g} hours is rejected",
        run_id=run_id,
        task_id="promote",
        details={"version": version, "timeout_hours": settings.approval_timeout_hours},
        url=url,
        settings=settings,
    )
