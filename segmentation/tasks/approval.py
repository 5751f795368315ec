"""Approval before promotion: record a reviewer's decision on a held challenger. Approval promotes it with the
same ``promote_version`` as the promotion DAG, as the reviewer; a rejection or a timeout leaves it a candidate.
"""

from __future__ import annotations

import logging
from typing import Any

from segmentation import review
from segmentation.config import Settings, get_settings
from segmentation.db import connect, training_database_url
from segmentation.errors import NotFoundError
from segmentation.tasks.retraining import promote_version

log = logging.getLogger(__name__)


def record_review(
    run_id: str,
    version: int,
    response: dict[str, Any],
    *,
    url: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Record a review of ``version``: approval promotes it with ``promote_version`` as the reviewer; a
    rejection or a timeout leaves it a candidate. ``changed`` says whether the champion changed (announce it).

    Idempotent: a retry records the same decision again and ``promote_version`` reports the same change.
    """
    settings = settings or get_settings()
    url = url or training_database_url(settings)
    decision = review.decision_of(response)
    with connect(url, settings) as conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE segmentation.model_versions
               SET reviewed_by = %s, review_comment = %s, reviewed_at = now(),
                   notes = CASE WHEN strpos(coalesce(notes, ''), %s) > 0 THEN notes
                                ELSE concat_ws('; ', notes, %s) END
               WHERE version = %s""",
            (decision.reviewer, decision.comment or None, f"run {run_id}: review", _note(run_id, decision), version),
        )
        if cur.rowcount == 0:
            raise NotFoundError(f"model version {version} does not exist; see `segmentation model list`")
    result: dict[str, Any] = {"version": version, "approved": decision.approved, "reviewed_by": decision.reviewer}
    result["changed"] = False
    if decision.approved:
        comment = f"approved in review{': ' + decision.comment if decision.comment else ''}"
        promoted = promote_version(run_id, version, user=decision.reviewer, reason=comment, url=url, settings=settings)
        result.update(changed=promoted["changed"], action=promoted["action"])
    log.info(
        "model version %d reviewed by %s: %s",
        version,
        decision.reviewer,
        "approved" if decision.approved else "not approved",
    )
    return result


def _note(run_id: str, decision: review.Decision) -> str:
    verdict = "approved" if decision.approved else "rejected"
    if decision.reviewer == review.TIMEOUT_REVIEWER:
        verdict = "not approved in time"
    return f"run {run_id}: review {verdict} by {decision.reviewer}"
