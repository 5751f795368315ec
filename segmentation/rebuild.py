"""Full rescore as build-and-swap: every shard COPYs its scores into one fresh table, publish swaps it in.

- plan: counts the feature rows, draws shard boundaries from sampled id quantiles (cost linear in the table,
  no per-customer queue), creates the table ``segmentation_rebuild.segments_<hex>`` and records the rebuild as
  the one under way in ``scoring_state`` (an older, unpublished plan is discarded: its table is dropped).
- shards: each reads its id range of ``customer_features`` in chunks, predicts, and COPYs the rows into the
  rebuild table, in one transaction per shard and without any global lock; it also counts its customers per
  segment and attribute bucket (``rebuild_distributions``, for the UI); a committed shard is recorded in
  ``rebuild_shards`` so that a retry never writes it twice.
- publish: builds the primary key once, carries over the live rows of customers that were not scored, writes
  ``segment_history`` from one set-based diff against the live table (exactly one row per real change),
  refreshes ``segment_counts``, sums the shards' counts into the run's ``segment_distributions``, ANALYZEs and
  swaps the table in with DETACH/ATTACH PARTITION, all in one transaction. A run killed anywhere before that
  commit leaves the live table as it was.

Overlapping runs: plans, shards and publish synchronise on the ``scoring_state`` row (a shard holds it FOR
SHARE, plan and publish FOR UPDATE), and only the newest plan may publish, so a change is logged once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from psycopg2.extras import execute_values

from segmentation import locks
from segmentation.columns import CUSTOMER_ID, PROBABILITY_COLUMNS
from segmentation.distributions import DISTRIBUTION_ATTRIBUTES, MISSING, TOTAL_ATTRIBUTE, bucket_counts
from segmentation.errors import DatabaseError
from segmentation.pgcopy import copy_binary_in
from segmentation.scoring import (
    CAUSE_SQL,
    FEATURE_COLUMNS_SQL,
    PHASES,
    TRANSITIONS_CONFLICT_SQL,
    TRANSITIONS_INSERT_SQL,
    ShardResult,
    add_lap,
    finish_shard,
    iter_chunks,
    predict_frame,
    shard_count,
)

log = logging.getLogger(__name__)

SCHEMA = "segmentation_rebuild"
# Below this many rows the quantiles are exact; above, they come from a block sample of about this many rows.
SAMPLE_ROWS = 100_000
MIN_ID = -(2**63)
MAX_ID = 2**63 - 1
SEGMENT_COLUMNS = [
    CUSTOMER_ID,
    "segment",
    *PROBABILITY_COLUMNS,
    "model_version",
    "source_updated_at",
    "scored_at",
    "run_id",
]
_COPY_COLUMNS = [c for c in SEGMENT_COLUMNS if c != "scored_at"]  # scored_at: the table's default, now()


@dataclass(frozen=True)
class RebuildPlan:
    """A planned full rescore: its table, shard count and the upper id bound of each shard but the last."""

    table: str
    shards: int
    rows: int
    bounds: list[int]


def quantile_bounds(cur: Any, n_rows: int, n_shards: int) -> list[int]:
    """``n_shards - 1`` ids splitting ``customer_features`` into ranges of about equal size.

    Exact below ``SAMPLE_ROWS`` rows; above, from a block sample (TABLESAMPLE SYSTEM) of about that many rows,
    so the cost does not grow with the table.
    """
    if n_shards <= 1:
        return []
    fractions = [k / n_shards for k in range(1, n_shards)]
    sample = ""
    if n_rows > SAMPLE_ROWS:
        sample = f"TABLESAMPLE SYSTEM ({min(100.0, 100.0 * SAMPLE_ROWS / n_rows):.6f}) REPEATABLE (16)"
    cur.execute(
        f"""SELECT percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY customer_id)
            FROM segmentation.customer_features {sample}""",
        (fractions,),
    )
    bounds = cur.fetchone()[0] or []
    # Duplicate bounds (a tiny sample) would make empty shards; they are harmless but dropped.
    return sorted({int(b) for b in bounds if b is not None})


def plan(
    cur: Any, *, run_id: str, model_version: int, shard_size: int, max_shards: int, state_locked: bool
) -> RebuildPlan:
    """Plan a full rescore in the caller's transaction (which must hold the ``scoring_state`` row FOR UPDATE).

    Takes the whole score queue (everyone is rescored), drops unpublished tables of older plans and creates
    this run's table.
    """
    if not state_locked:
        raise DatabaseError("rebuild.plan needs the scoring_state row locked FOR UPDATE by the caller")
    cur.execute("SELECT segmentation.take_all_score_pending()")
    cur.execute("SELECT count(*) FROM segmentation.customer_features")
    n_rows = int(cur.fetchone()[0])
    n_shards = max(1, shard_count(n_rows, shard_size, max_shards))
    bounds = quantile_bounds(cur, n_rows, n_shards)
    table = f"segments_{uuid.uuid4().hex[:16]}"
    cur.execute("SELECT segmentation.rebuild_drop_others(%s)", (table,))
    dropped = cur.fetchone()[0]
    if dropped:
        log.info("run %s: dropped %d rebuild table(s) of older, unpublished plans", run_id, dropped)
    cur.execute("DELETE FROM segmentation.rebuild_shards")
    cur.execute("DELETE FROM segmentation.rebuild_distributions")
    cur.execute("SELECT segmentation.rebuild_create(%s)", (table,))
    cur.execute(
        """UPDATE segmentation.scoring_state SET rebuild_run = %s, rebuild_table = %s, updated_at = now()""",
        (run_id, table),
    )
    log.info(
        "run %s: full rescore of %d customers with model %d in %d shards into %s.%s",
        run_id,
        n_rows,
        model_version,
        len(bounds) + 1,
        SCHEMA,
        table,
    )
    return RebuildPlan(table=table, shards=len(bounds) + 1, rows=n_rows, bounds=bounds)


def _shard_range(bounds: list[int], shard: int) -> tuple[int, int]:
    """The ids ``(after, upto]`` of ``shard``."""
    after = bounds[shard - 1] if shard > 0 else MIN_ID
    upto = bounds[shard] if shard < len(bounds) else MAX_ID
    return after, upto


def score_range(
    cur: Any,
    model: Any,
    *,
    run_id: str,
    shard: int,
    model_version: int,
    table: str,
    bounds: list[int],
    chunk_size: int,
) -> ShardResult:
    """Score one id range of a rebuild into its table, in the caller's transaction.

    Skips (0 rows) when the plan was superseded by a newer one, and when this shard already committed.
    """
    started = time.perf_counter()
    phases = dict.fromkeys(PHASES, 0.0)
    cur.execute("SELECT rebuild_table FROM segmentation.scoring_state FOR SHARE")
    current = cur.fetchone()
    if current is None or current[0] != table:
        log.warning("run %s shard %d: the rebuild %s was superseded or released; nothing to do", run_id, shard, table)
        return finish_shard(shard, 0, 0, started, phases)
    cur.execute("SELECT rows FROM segmentation.rebuild_shards WHERE rebuild_table = %s AND shard = %s", (table, shard))
    done = cur.fetchone()
    if done is not None:
        log.info("run %s shard %d: already written (%d rows)", run_id, shard, done[0])
        return finish_shard(shard, int(done[0]), 0, started, phases)
    after, upto = _shard_range(bounds, shard)
    target = f"{SCHEMA}.{table}"
    query = f"""SELECT {FEATURE_COLUMNS_SQL} FROM segmentation.customer_features AS f
                WHERE f.customer_id > %(after)s AND f.customer_id <= %(upto)s
                ORDER BY f.customer_id LIMIT %(limit)s"""
    rows = 0
    counts: Counter[tuple[str, str, str]] = Counter()
    for features in iter_chunks(cur, query, {"upto": upto}, chunk_size, after, phases):
        lap = time.perf_counter()
        scored = predict_frame(model, features)
        scored["source_updated_at"] = features["source_updated_at"].to_numpy()
        scored["model_version"] = model_version
        scored["run_id"] = run_id
        lap = add_lap(phases, "predict", lap)
        counts.update(bucket_counts(features, scored["segment"]))
        lap = add_lap(phases, "distributions", lap)
        copy_binary_in(cur, scored, target, _COPY_COLUMNS)
        add_lap(phases, "write", lap)
        rows += len(features)
        log.info("shard %d: chunk of %d rows staged, %d so far (not committed)", shard, len(features), rows)
    lap = time.perf_counter()
    execute_values(
        cur,
        """INSERT INTO segmentation.rebuild_distributions (rebuild_table, shard, segment, attribute, bucket, customers)
           VALUES %s""",
        [(table, shard, *key, n) for key, n in sorted(counts.items())],
    )
    add_lap(phases, "distributions", lap)
    cur.execute(
        "INSERT INTO segmentation.rebuild_shards (rebuild_table, shard, rows) VALUES (%s, %s, %s)",
        (table, shard, rows),
    )
    return finish_shard(shard, rows, 0, started, phases)


_COLS = ", ".join(SEGMENT_COLUMNS)
# One pass over new and live rows: history for every real change, and the live rows of customers the rebuild
# did not score (e.g. quarantined since) carried over into the new table. History goes in in customer order,
# so its (customer_id, history_id) key is filled page after page rather than at random; its feed rows follow
# (a trigger on segment_history), and the run's transitions count the same changes by cause.
_DIFF_SQL = f"""
WITH joined AS (
    SELECT n.customer_id AS new_id, n.segment AS new_segment, n.model_version AS new_version,
           l.customer_id AS live_id, l.segment AS live_segment,
           {CAUSE_SQL.format(live="l", version="n.model_version", stamp="n.source_updated_at")} AS cause,
           {", ".join(f"l.{c} AS l_{c}" for c in SEGMENT_COLUMNS)}
    FROM {{table}} AS n
    FULL JOIN segmentation.customer_segments AS l ON l.customer_id = n.customer_id
), history AS (
    INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version, run_id)
    SELECT new_id, live_segment, new_segment, new_version, %(run_id)s
    FROM joined WHERE new_id IS NOT NULL AND live_segment IS DISTINCT FROM new_segment
    ORDER BY new_id
    RETURNING 1
), moved AS (
    {TRANSITIONS_INSERT_SQL}
    SELECT %(run_id)s, live_segment, new_segment, cause, count(*)
    FROM joined WHERE new_id IS NOT NULL AND live_segment IS DISTINCT FROM new_segment
    GROUP BY live_segment, new_segment, cause
    {TRANSITIONS_CONFLICT_SQL}
), carried AS (
    INSERT INTO {{table}} ({_COLS})
    SELECT {", ".join(f"l_{c}" for c in SEGMENT_COLUMNS)} FROM joined WHERE new_id IS NULL
    RETURNING segment
)
SELECT (SELECT count(*) FROM history),
       (SELECT coalesce(jsonb_object_agg(segment, n), jsonb_build_object())
        FROM (SELECT segment, count(*) AS n FROM carried GROUP BY segment) AS c)
"""

# The run's segment distributions: the shards' counts, plus the carried-over customers (who have no features:
# every attribute "(missing)"), plus each segment's total from segment_counts.
_DISTRIBUTIONS_SQL = f"""
INSERT INTO segmentation.segment_distributions (run_id, segment, attribute, bucket, customers)
SELECT %(run_id)s, segment, attribute, bucket, sum(customers) FROM (
    SELECT segment, attribute, bucket, customers FROM segmentation.rebuild_distributions
    WHERE rebuild_table = %(table)s
    UNION ALL
    SELECT c.key, a.attribute, '{MISSING}', c.value::bigint
    FROM jsonb_each_text(%(carried)s::jsonb) AS c CROSS JOIN unnest(%(attributes)s::text[]) AS a(attribute)
) AS parts
GROUP BY segment, attribute, bucket
UNION ALL
SELECT %(run_id)s, segment, '{TOTAL_ATTRIBUTE}', '', customers FROM segmentation.segment_counts
"""


def publish(cur: Any, *, run_id: str, table: str, shards: int, model_version: int) -> dict[str, Any]:
    """Swap this run's rebuild in, in the caller's transaction; figures of what it did.

    Discards the table instead (``published`` False) when a newer plan superseded it. Raises DatabaseError
    when a shard has not committed, leaving everything for a retry.
    """
    started = time.perf_counter()
    cur.execute("SELECT rebuild_table FROM segmentation.scoring_state FOR UPDATE")
    current = cur.fetchone()
    if current is None or current[0] != table:
        cur.execute("SELECT segmentation.rebuild_drop(%s)", (table,))
        log.warning("run %s: rebuild %s was superseded by a newer plan; discarded, nothing published", run_id, table)
        return {"published": False, "reason": "superseded by a newer plan"}
    cur.execute(
        "SELECT count(*), coalesce(sum(rows), 0) FROM segmentation.rebuild_shards WHERE rebuild_table = %s",
        (table,),
    )
    done, scored = cur.fetchone()
    if done < shards:
        raise DatabaseError(
            f"run {run_id}: only {done} of {shards} shards of the full rescore have committed; "
            "retry the missing score tasks, then finalise"
        )
    seconds: dict[str, float] = {}
    lap = time.perf_counter()
    # Increments wait while the live table is compared and swapped, so no change is logged twice.
    locks.xact_lock(cur, locks.SEGMENT_WRITE)
    lap = _lap(seconds, "wait", lap)
    cur.execute("SELECT segmentation.rebuild_index(%s)", (table,))
    # Customers deleted after a shard read their features must not come back (they have an 'exited' feed row).
    cur.execute("SELECT segmentation.rebuild_forget_exited(%s)", (table,))
    forgotten = int(cur.fetchone()[0])
    lap = _lap(seconds, "index", lap)
    cur.execute(_DIFF_SQL.format(table=f"{SCHEMA}.{table}"), {"run_id": run_id})
    changed, carried = cur.fetchone()
    lap = _lap(seconds, "diff", lap)
    cur.execute("DELETE FROM segmentation.segment_counts")
    cur.execute(
        f"""INSERT INTO segmentation.segment_counts (segment, customers)
            SELECT segment, count(*) FROM {SCHEMA}.{table} GROUP BY segment"""
    )
    lap = _lap(seconds, "counts", lap)
    cur.execute("DELETE FROM segmentation.segment_distributions WHERE run_id = %s", (run_id,))
    cur.execute(
        _DISTRIBUTIONS_SQL,
        {
            "run_id": run_id,
            "table": table,
            "carried": json.dumps(carried),
            "attributes": list(DISTRIBUTION_ATTRIBUTES),
        },
    )
    cur.execute("DELETE FROM segmentation.rebuild_distributions WHERE rebuild_table = %s", (table,))
    lap = _lap(seconds, "distributions", lap)
    cur.execute("SELECT segmentation.rebuild_swap(%s)", (table,))
    lap = _lap(seconds, "analyze_swap", lap)
    cur.execute(
        """UPDATE segmentation.scoring_state
           SET live_model_version = %s, rebuild_run = NULL, rebuild_table = NULL, updated_at = now()""",
        (model_version,),
    )
    cur.execute("DELETE FROM segmentation.rebuild_shards WHERE rebuild_table = %s", (table,))
    figures = {
        "published": True,
        "rows": int(scored),
        "changed_segments": int(changed),
        "carried_over": sum(int(n) for n in carried.values()),
        "exited_meanwhile": forgotten,
        "phases": seconds,
        "seconds": round(time.perf_counter() - started, 3),
    }
    log.info("run %s: full rescore published: %s", run_id, figures)
    return figures


def _lap(seconds: dict[str, float], phase: str, since: float) -> float:
    now = time.perf_counter()
    seconds[phase] = round(now - since, 3)
    return now


def release(cur: Any, run_id: str) -> None:
    """Drop a run's unpublished rebuild; the full rescore stays owed (``rebuild_run`` remains set)."""
    cur.execute(
        "SELECT rebuild_table FROM segmentation.scoring_plans WHERE run_id = %s AND mode = 'rebuild'", (run_id,)
    )
    row = cur.fetchone()
    if row is None or row[0] is None:
        return
    cur.execute(
        """UPDATE segmentation.scoring_state SET rebuild_table = NULL, updated_at = now()
           WHERE rebuild_table = %s""",
        (row[0],),
    )
    cur.execute("SELECT segmentation.rebuild_drop(%s)", (row[0],))
    cur.execute("DELETE FROM segmentation.rebuild_shards WHERE rebuild_table = %s", (row[0],))
    cur.execute("DELETE FROM segmentation.rebuild_distributions WHERE rebuild_table = %s", (row[0],))
    log.info("run %s: unpublished full rescore %s released; the next plan rescores everyone", run_id, row[0])
