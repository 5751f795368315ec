"""Which write path a scoring run takes, and its plan: an increment of the queued changes, or a full rebuild.

A run rebuilds when the live table was scored by another model than the champion, when a rebuild was planned
and never published (it took the whole queue, so it is still owed), or when nothing is scored yet. Otherwise
it scores only the customers the change-capture trigger queued in ``score_pending``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from segmentation import rebuild, scoring
from segmentation.errors import DatabaseError

log = logging.getLogger(__name__)

# Customers re-queued when a run gives its queue back: the queue rows go, the ids return to score_pending.
_RELEASE_SQL = """
WITH released AS (DELETE FROM segmentation.score_queue WHERE run_id = %s RETURNING customer_id),
requeued AS (
    INSERT INTO segmentation.score_pending (customer_id) SELECT customer_id FROM released
    ON CONFLICT (customer_id) DO NOTHING
)
SELECT count(*) FROM released
"""
# Queues of other runs that ended (or started more than a day ago) without scoring all of their shards.
_STALE_RUNS_SQL = """
SELECT DISTINCT q.run_id FROM segmentation.score_queue AS q
LEFT JOIN segmentation.pipeline_runs AS r USING (run_id)
WHERE q.run_id <> %s AND (r.run_id IS NULL OR r.status <> 'running' OR r.started_at < now() - interval '1 day')
"""

INCREMENT = "increment"
REBUILD = "rebuild"


@dataclass(frozen=True)
class Plan:
    """One run's scoring plan, as stored in ``scoring_plans``."""

    run_id: str
    mode: str
    model_version: int
    shards: int
    rows: int = 0
    bounds: list[int] = field(default_factory=list)
    table: str | None = None
    published: bool = False


def rebuild_reason(cur: Any, model_version: int) -> str | None:
    """Why this run must rescore everyone, or None for an increment. Locks ``scoring_state`` FOR UPDATE."""
    cur.execute("SELECT live_model_version, rebuild_run FROM segmentation.scoring_state FOR UPDATE")
    state = cur.fetchone()
    if state is None:
        raise DatabaseError("segmentation.scoring_state has no row; run `segmentation init-db` (migration 007)")
    live_version, pending_run = state
    if pending_run is not None:
        return f"the full rescore planned by run {pending_run} was not published"
    if live_version != model_version:
        return f"the live scores come from model {live_version}, the champion is {model_version}"
    cur.execute("SELECT NOT EXISTS (SELECT 1 FROM segmentation.customer_segments)")
    if cur.fetchone()[0]:
        return "no customer is scored yet"
    return None


def plan(cur: Any, *, run_id: str, model_version: int, shard_size: int, max_shards: int) -> Plan:
    """Plan this run's scoring in the caller's transaction and record it in ``scoring_plans``."""
    reason = rebuild_reason(cur, model_version)
    release_run(cur, run_id)  # a re-planned run gives back what its earlier plan took
    if reason is None:
        shards, rows = plan_increment(cur, run_id=run_id, shard_size=shard_size, max_shards=max_shards)
        result = Plan(run_id, INCREMENT, model_version, len(shards), rows)
    else:
        log.info("run %s: full rescore: %s", run_id, reason)
        planned = rebuild.plan(
            cur,
            run_id=run_id,
            model_version=model_version,
            shard_size=shard_size,
            max_shards=max_shards,
            state_locked=True,
        )
        result = Plan(run_id, REBUILD, model_version, planned.shards, planned.rows, planned.bounds, planned.table)
    cur.execute(
        """INSERT INTO segmentation.scoring_plans (run_id, mode, model_version, shards, bounds, rebuild_table)
           VALUES (%s, %s, %s, %s, %s, %s)
           ON CONFLICT (run_id) DO UPDATE SET mode = EXCLUDED.mode, model_version = EXCLUDED.model_version,
               shards = EXCLUDED.shards, bounds = EXCLUDED.bounds, rebuild_table = EXCLUDED.rebuild_table,
               planned_at = now(), published_at = NULL""",
        (run_id, result.mode, model_version, result.shards, result.bounds, result.table),
    )
    return result


def load(cur: Any, run_id: str) -> Plan:
    """The stored plan of ``run_id``; DatabaseError when the run was never planned."""
    cur.execute(
        """SELECT mode, model_version, shards, bounds, rebuild_table, published_at IS NOT NULL
           FROM segmentation.scoring_plans WHERE run_id = %s""",
        (run_id,),
    )
    row = cur.fetchone()
    if row is None:
        raise DatabaseError(f"run {run_id!r} has no scoring plan; run its plan task first")
    mode, version, shards, bounds, table, published = row
    return Plan(run_id, mode, version, shards, 0, [int(b) for b in bounds], table, published)


def publish(cur: Any, run_id: str) -> dict[str, Any]:
    """Publish the run's full rescore (once; a repeated call does nothing) and give back leftover queue rows."""
    cur.execute("SELECT 1 FROM segmentation.scoring_plans WHERE run_id = %s", (run_id,))
    if cur.fetchone() is None:
        return {}
    planned = load(cur, run_id)
    figures: dict[str, Any] = {"mode": planned.mode}
    if planned.mode == REBUILD and not planned.published:
        figures["publish"] = rebuild.publish(
            cur, run_id=run_id, table=planned.table, shards=planned.shards, model_version=planned.model_version
        )
        cur.execute("UPDATE segmentation.scoring_plans SET published_at = now() WHERE run_id = %s", (run_id,))
    # Increment shards remove their own queue rows; anything left goes back to the next run.
    figures["released"] = release_run(cur, run_id)
    return figures


def release_run(cur: Any, run_id: str) -> int:
    """Give a run's queued scoring work back, so that the next run scores it; returns the customers re-queued.

    For an increment, the run's unscored ids in ``score_queue`` go back to ``score_pending``. A full rescore
    took the whole queue when it was planned; releasing it drops its unpublished table and leaves the rescore
    owed (``scoring_state.rebuild_run`` stays set), so the next plan rescores everyone again.
    """
    cur.execute(_RELEASE_SQL, (run_id,))
    released = int(cur.fetchone()[0])
    rebuild.release(cur, run_id)
    if released:
        log.info("run %s: %d queued customers released to the next run", run_id, released)
    return released


def plan_increment(cur: Any, *, run_id: str, shard_size: int, max_shards: int) -> tuple[list[int], int]:
    """Move the queued ids into this run's ``score_queue`` in contiguous, balanced id ranges, one per shard.

    Takes only ``score_pending`` (never the whole table), inside the caller's transaction: a killed plan
    leaves the queue as it was, and an id queued again while the run scores stays for the next run.
    Re-planning the same run first gives its earlier queue back, so a retried plan is harmless.
    Returns the shard numbers and the rows queued.
    """
    release_run(cur, run_id)  # harmless when the caller already did
    cur.execute(_STALE_RUNS_SQL, (run_id,))
    for (stale,) in cur.fetchall():
        log.warning("run %s: releasing the queue left by run %s", run_id, stale)
        release_run(cur, stale)
    cur.execute(
        """WITH taken AS (DELETE FROM segmentation.score_pending RETURNING customer_id),
           ranked AS (SELECT customer_id, row_number() OVER (ORDER BY customer_id) AS rank,
                             count(*) OVER () AS total FROM taken)
           INSERT INTO segmentation.score_queue (run_id, shard, customer_id)
           SELECT %(run_id)s,
                  ((rank - 1) * LEAST(%(max_shards)s, ceil(total::numeric / %(shard_size)s))::bigint
                   / total)::integer,
                  customer_id
           FROM ranked""",
        {"run_id": run_id, "max_shards": max_shards, "shard_size": shard_size},
    )
    n_rows = cur.rowcount
    n_shards = scoring.shard_count(n_rows, shard_size, max_shards)
    log.info("run %s: %d changed customers to score in %d shards", run_id, n_rows, n_shards)
    return list(range(n_shards)), n_rows
