"""Every SQL statement of the UI (a version's stored segment profiles are read by ``segmentation.predict``).
Values from requests are bound parameters only.

The overview and quality pages read pre-aggregated figures written by each run's finalise step
(``segment_distributions``, ``drift_metrics``, ``pipeline_runs.steps``), never scans of ``customer_segments``.
"""

from __future__ import annotations

from typing import Any

from segmentation.columns import ATTRIBUTE_COLUMNS, SEGMENTS
from segmentation.distributions import TOTAL_ATTRIBUTE

HISTORY_RUNS = 30
TOP_REASONS = 8


def _rows(cur: Any, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    cur.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def latest_distribution_run(cur: Any) -> dict[str, Any] | None:
    """The latest finished run that recorded segment distributions."""
    rows = _rows(
        cur,
        """SELECT r.run_id, r.dag_id, r.finished_at, r.model_version
           FROM segmentation.pipeline_runs AS r
           WHERE r.status = 'success' AND EXISTS (
               SELECT 1 FROM segmentation.segment_distributions AS d WHERE d.run_id = r.run_id)
           ORDER BY r.finished_at DESC NULLS LAST LIMIT 1""",
    )
    return rows[0] if rows else None


def distributions(cur: Any, run_id: str) -> dict[str, dict[str, dict[str, int]]]:
    """``{attribute: {segment: {bucket: customers}}}`` of one run (attribute ``_total`` holds segment sizes)."""
    cur.execute(
        """SELECT attribute, segment, bucket, customers FROM segmentation.segment_distributions
           WHERE run_id = %s""",
        (run_id,),
    )
    out: dict[str, dict[str, dict[str, int]]] = {}
    for attribute, segment, bucket, customers in cur.fetchall():
        out.setdefault(attribute, {}).setdefault(segment, {})[bucket] = int(customers)
    return out


def segment_totals(dist: dict[str, dict[str, dict[str, int]]]) -> dict[str, int]:
    """Customers per segment, in SEGMENTS order, from a run's distributions."""
    totals = dist.get(TOTAL_ATTRIBUTE, {})
    return {s: sum(totals[s].values()) for s in SEGMENTS if s in totals}


def share_history(cur: Any, runs: int = HISTORY_RUNS) -> list[dict[str, Any]]:
    """Segment shares of the last ``runs`` finished runs, oldest first."""
    rows = _rows(
        cur,
        """WITH recent AS (
               SELECT r.run_id, r.finished_at FROM segmentation.pipeline_runs AS r
               WHERE r.status = 'success' AND r.finished_at IS NOT NULL AND EXISTS (
                   SELECT 1 FROM segmentation.drift_metrics AS m
                   WHERE m.metric = 'segment_share' AND m.run_id = r.run_id)
               ORDER BY r.finished_at DESC LIMIT %s)
           SELECT recent.run_id, recent.finished_at, m.subject AS segment, m.value
           FROM recent JOIN segmentation.drift_metrics AS m
             ON m.run_id = recent.run_id AND m.metric = 'segment_share'
           ORDER BY recent.finished_at, m.subject""",
        (runs,),
    )
    history: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = history.setdefault(row["run_id"], {"run_id": row["run_id"], "finished_at": row["finished_at"]})
        entry[row["segment"]] = row["value"]
    return list(history.values())


def freshness(cur: Any) -> dict[str, Any]:
    """When customers were last scored successfully, and how long ago (seconds)."""
    rows = _rows(
        cur,
        """SELECT max(finished_at) AS last_success,
                  extract(epoch FROM now() - max(finished_at))::float8 AS age_seconds
           FROM segmentation.pipeline_runs WHERE status = 'success' AND steps ? 'finalise'""",
    )
    return rows[0]


def last_nightly_run(cur: Any) -> dict[str, Any] | None:
    """The latest scoring run (Airflow nightly or the CLI) with per-step rows and seconds."""
    rows = _rows(
        cur,
        """SELECT run_id, dag_id, status, started_at, finished_at, model_version, steps
           FROM segmentation.pipeline_runs WHERE dag_id IN ('segmentation_nightly', 'cli')
           ORDER BY started_at DESC LIMIT 1""",
    )
    if not rows:
        return None
    run = rows[0]
    run["step_rows"] = summarise_steps(run.pop("steps") or {})
    return run


def summarise_steps(steps: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step: rows and seconds; the score shards are summed into one ``score`` row."""
    order = ["clean", "features", "train", "promote", "plan", "score", "finalise"]
    merged: dict[str, dict[str, Any]] = {}
    for name, figures in steps.items():
        key = "score" if name.startswith("score_shard_") else name
        row = merged.setdefault(key, {"step": key, "rows": 0, "seconds": 0.0, "parts": 0})
        row["rows"] += int(figures.get("rows") or 0) if isinstance(figures.get("rows"), int | float) else 0
        row["seconds"] += float(figures.get("seconds") or 0.0)
        row["parts"] += 1
    return sorted(merged.values(), key=lambda r: order.index(r["step"]) if r["step"] in order else len(order))


def quarantine(cur: Any, runs: int = HISTORY_RUNS) -> dict[str, Any]:
    """Customers in quarantine, and the top reasons over the last runs' clean steps (pre-counted)."""
    cur.execute("SELECT count(*) FROM segmentation.customer_rejects")
    total = int(cur.fetchone()[0])
    rows = _rows(
        cur,
        """WITH recent AS (
               SELECT steps->'clean'->'reasons' AS reasons FROM segmentation.pipeline_runs
               WHERE steps ? 'clean' ORDER BY started_at DESC LIMIT %s)
           SELECT r.key AS reason, sum(r.value::bigint) AS customers
           FROM recent, jsonb_each_text(CASE WHEN jsonb_typeof(reasons) = 'object' THEN reasons ELSE '{}' END) AS r
           GROUP BY r.key ORDER BY customers DESC, reason LIMIT %s""",
        (runs, TOP_REASONS),
    )
    return {"total": total, "top_reasons": [{"reason": r["reason"], "customers": int(r["customers"])} for r in rows]}


def champion_row(cur: Any) -> dict[str, Any] | None:
    """The champion's registry row (no artifact) with metrics and profiles."""
    rows = _rows(
        cur,
        """SELECT version, model_name, sha256, metrics, profiles, created_at, promoted_at, promoted_by
           FROM segmentation.model_versions WHERE status = 'champion'""",
    )
    return rows[0] if rows else None


def model_versions(cur: Any) -> list[dict[str, Any]]:
    """Every registry version, newest first, without artifacts; ``awaiting_approval`` when it waits for a review
    (sql/014) in run ``review_run_id`` of ``review_dag_id``."""
    return _rows(
        cur,
        """SELECT v.version, v.status, v.model_name, v.created_at, v.promoted_at, v.promoted_by, v.trigger,
                  v.run_id, v.notes,
                  (v.metrics->>'accuracy')::float8 AS accuracy, (v.metrics->>'macro_f1')::float8 AS macro_f1,
                  (v.metrics->>'log_loss')::float8 AS log_loss, (v.metrics->>'brier')::float8 AS brier,
                  (v.metrics->>'ece_mean')::float8 AS ece_mean,
                  v.reviewed_by, v.review_comment, v.review_run_id, r.dag_id AS review_dag_id,
                  (v.review_run_id IS NOT NULL AND v.reviewed_by IS NULL AND v.status = 'candidate')
                      AS awaiting_approval
           FROM segmentation.model_versions AS v
           LEFT JOIN segmentation.pipeline_runs AS r ON r.run_id = v.review_run_id
           ORDER BY v.version DESC""",
    )


def record_promoted_by(cur: Any, version: int, user: str) -> None:
    """Who promoted or rolled back to ``version``."""
    cur.execute(
        "UPDATE segmentation.model_versions SET promoted_by = %s WHERE version = %s",
        (user, version),
    )


def quality(cur: Any, runs: int = HISTORY_RUNS) -> list[dict[str, Any]]:
    """PSI, missing-value rates and reject share of the last runs, oldest first, one row per run and figure."""
    return _rows(
        cur,
        """WITH recent AS (
               SELECT run_id, started_at FROM segmentation.pipeline_runs
               ORDER BY started_at DESC LIMIT %s)
           SELECT recent.run_id, recent.started_at, m.metric, m.subject, m.value
           FROM recent JOIN segmentation.drift_metrics AS m ON m.run_id = recent.run_id
           WHERE m.metric IN ('psi', 'missing_rate', 'reject_share')
           ORDER BY recent.started_at, m.metric, m.subject""",
        (runs,),
    )


def customer(cur: Any, customer_id: int) -> dict[str, Any] | None:
    """One customer: source attributes, current segment and probabilities, and quarantine reasons if any."""
    cols = ", ".join(f"c.{c}" for c in ATTRIBUTE_COLUMNS)
    rows = _rows(
        cur,
        f"""SELECT c.customer_id, {cols}, c.updated_at,
                   s.segment, s.p_a, s.p_b, s.p_c, s.p_d, s.model_version, s.scored_at, s.run_id
            FROM segmentation.customers AS c
            LEFT JOIN segmentation.customer_segments AS s USING (customer_id)
            WHERE c.customer_id = %s""",
        (customer_id,),
    )
    if not rows:
        return None
    row = rows[0]
    rejects = _rows(
        cur,
        """SELECT reasons, rejected_at FROM segmentation.customer_rejects WHERE customer_id = %s
           ORDER BY rejected_at DESC LIMIT 1""",
        (customer_id,),
    )
    row["quarantine"] = rejects[0] if rejects else None
    return row


def customer_history(cur: Any, customer_id: int) -> list[dict[str, Any]]:
    """A customer's segment changes, newest first, with the model versions."""
    return _rows(
        cur,
        """SELECT changed_at, previous_segment, segment, model_version, run_id
           FROM segmentation.segment_history WHERE customer_id = %s ORDER BY changed_at DESC, history_id DESC""",
        (customer_id,),
    )


def champion_key(cur: Any) -> tuple[int, str] | None:
    """The champion's version and sha256 (a cheap lookup before using the cached model)."""
    cur.execute("SELECT version, sha256 FROM segmentation.model_versions WHERE status = 'champion'")
    row = cur.fetchone()
    return (int(row[0]), row[1].strip()) if row else None
