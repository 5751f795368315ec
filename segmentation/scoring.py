"""Scoring: chunked prediction, and the two write paths of a scoring shard.

- Increment (few changed customers): plan moves the queued ids (``score_pending``, filled by a trigger on
  ``customer_features``) into ``score_queue`` in contiguous id ranges; each shard predicts its ids and upserts
  them into the live ``customer_segments`` with their history rows, in one transaction.
- Rebuild (a full rescore: new champion, or nothing scored yet): see ``segmentation.rebuild``.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from segmentation import locks
from segmentation.columns import CUSTOMER_ID, MODEL_INPUT_COLUMNS, PROBABILITY_COLUMNS
from segmentation.pgcopy import copy_binary_in, copy_frame_out
from segmentation.predict import predict_frame  # the pure per-row prediction, shared with one customer

log = logging.getLogger(__name__)

FEATURE_COLUMNS_SQL = ", ".join(f"f.{c}" for c in (CUSTOMER_ID, *MODEL_INPUT_COLUMNS, "source_updated_at"))
NUMERIC_DTYPES = {
    "age": "float64",
    "work_experience": "float64",
    "family_size": "float64",
    "spending_rank": "float64",
    "working_years_share": "float64",
}


def peak_rss_mb() -> float:
    """This process's own peak resident memory so far, in MB.

    VmHWM where /proc has it: a forked task's ru_maxrss starts from its parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shard_count(n_rows: int, shard_size: int, max_shards: int) -> int:
    """Shards for ``n_rows`` at ``shard_size`` rows each, at most ``max_shards`` (Airflow's map limit)."""
    if n_rows <= 0:
        return 0
    return min(max_shards, math.ceil(n_rows / shard_size))


def read_features(cur: Any, query: str, params: dict[str, Any]) -> pd.DataFrame:
    """Feature rows via COPY, typed by name while the CSV is parsed."""
    return copy_frame_out(cur, query, params, dtypes={CUSTOMER_ID: "int64", **NUMERIC_DTYPES})


@dataclass(frozen=True)
class ShardResult:
    """What one shard did."""

    shard: int
    rows: int
    changed_segments: int
    seconds: float
    # Seconds per phase: read (COPY out), predict, stage (binary COPY into the stage of an increment), wait
    # (for the write lock of an increment), write (history and upsert; a rebuild's COPY into its table).
    phases: dict[str, float]


# "distributions": a full rescore's shards count their customers per attribute bucket for the UI.
PHASES = ("read", "predict", "distributions", "stage", "wait", "write")
_STAGE_COLUMNS = [CUSTOMER_ID, "segment", *PROBABILITY_COLUMNS, "source_updated_at"]
# Why a customer's segment changed (segment_transitions.cause), from its live row ``s`` and the new score:
# no live row: 'new'; else whether the model version and/or the attributes (source_updated_at) differ. A change
# with neither (the features were rebuilt from unchanged attributes) counts as 'attributes': the model input moved.
CAUSE_SQL = """CASE WHEN {live}.customer_id IS NULL THEN 'new'
     WHEN {live}.model_version IS DISTINCT FROM {version} AND {live}.source_updated_at IS DISTINCT FROM {stamp}
         THEN 'both'
     WHEN {live}.model_version IS DISTINCT FROM {version} THEN 'model'
     ELSE 'attributes' END"""
# Per run: customers per (from, to, cause); an increment's shards add to the run's counts.
TRANSITIONS_INSERT_SQL = """INSERT INTO segmentation.segment_transitions AS t
        (run_id, from_segment, to_segment, cause, customers)"""
TRANSITIONS_CONFLICT_SQL = """ON CONFLICT ON CONSTRAINT segment_transitions_key
    DO UPDATE SET customers = t.customers + EXCLUDED.customers"""
# History rows of the changes (their feed rows: a trigger on segment_history), the run's transitions, and the
# per-segment counts moved by them, in one statement.
_HISTORY_SQL = f"""
WITH diff AS MATERIALIZED (
    SELECT st.customer_id, s.segment AS previous_segment, st.segment,
           {CAUSE_SQL.format(live="s", version="%(model_version)s", stamp="st.source_updated_at")} AS cause
    FROM score_stage AS st
    LEFT JOIN segmentation.customer_segments AS s USING (customer_id)
    WHERE s.segment IS DISTINCT FROM st.segment
), changes AS (
    INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version, run_id)
    SELECT customer_id, previous_segment, segment, %(model_version)s, %(run_id)s FROM diff
    RETURNING previous_segment, segment
), moved AS (
    {TRANSITIONS_INSERT_SQL}
    SELECT %(run_id)s, previous_segment, segment, cause, count(*) FROM diff
    GROUP BY previous_segment, segment, cause
    {TRANSITIONS_CONFLICT_SQL}
), moves AS (
    SELECT segment, count(*) AS n FROM changes GROUP BY segment
    UNION ALL
    SELECT previous_segment, -count(*) FROM changes WHERE previous_segment IS NOT NULL GROUP BY previous_segment
), counted AS (
    INSERT INTO segmentation.segment_counts AS c (segment, customers)
    SELECT segment, sum(n) FROM moves GROUP BY segment
    ON CONFLICT (segment) DO UPDATE SET customers = c.customers + EXCLUDED.customers
)
SELECT count(*) FROM changes
"""
# Customers deleted from ``customers`` while the shard scored them have exited (an 'exited' feed row, and
# their live row is gone): they are not written, so that a deletion is never undone. Exits are few, and the
# partial index on them keeps this a small lookup (sql/015). A customer inserted again since is written.
_GONE_SQL = """DELETE FROM score_stage AS st
WHERE st.customer_id IN (SELECT customer_id FROM segmentation.segment_feed WHERE event = 'exited')
  AND NOT EXISTS (SELECT 1 FROM segmentation.customers AS c WHERE c.customer_id = st.customer_id)"""
_UPSERT_SQL = f"""
INSERT INTO segmentation.customer_segments
    (customer_id, segment, {", ".join(PROBABILITY_COLUMNS)}, model_version, source_updated_at, scored_at, run_id)
SELECT customer_id, segment, {", ".join(PROBABILITY_COLUMNS)}, %(model_version)s, source_updated_at, now(),
       %(run_id)s
FROM score_stage
ON CONFLICT (customer_id) DO UPDATE SET
    segment = EXCLUDED.segment,
    {", ".join(f"{p} = EXCLUDED.{p}" for p in PROBABILITY_COLUMNS)},
    model_version = EXCLUDED.model_version,
    source_updated_at = EXCLUDED.source_updated_at,
    scored_at = EXCLUDED.scored_at,
    run_id = EXCLUDED.run_id
"""


def score_queued(cur: Any, model: Any, *, run_id: str, shard: int, model_version: int, chunk_size: int) -> ShardResult:
    """Score the customers queued for one shard of an increment, chunk by chunk into a staging table, then
    write their history and upsert them in the caller's transaction, and remove them from the queue.

    The caller commits once per shard, so a shard is written completely or not at all (its queue rows with
    it), and a retried shard recomputes the same values.
    """
    started = time.perf_counter()
    cur.execute(
        # No key on the stage: the queue holds each customer once per run, and an index would slow the COPY.
        "CREATE TEMP TABLE IF NOT EXISTS score_stage (customer_id bigint, segment char(1), "
        "p_a double precision, p_b double precision, p_c double precision, p_d double precision, "
        "source_updated_at timestamptz) ON COMMIT DROP"
    )
    query = f"""SELECT {FEATURE_COLUMNS_SQL}
                FROM segmentation.score_queue AS q
                JOIN segmentation.customer_features AS f USING (customer_id)
                WHERE q.run_id = %(run_id)s AND q.shard = %(shard)s AND q.customer_id > %(after)s
                ORDER BY q.customer_id LIMIT %(limit)s"""
    after, rows = -(2**63), 0
    phases = dict.fromkeys(PHASES, 0.0)
    for features in iter_chunks(cur, query, {"run_id": run_id, "shard": shard}, chunk_size, after, phases):
        lap = time.perf_counter()
        scored = predict_frame(model, features)
        scored["source_updated_at"] = features["source_updated_at"].to_numpy()
        lap = add_lap(phases, "predict", lap)
        copy_binary_in(cur, scored, "score_stage", _STAGE_COLUMNS)
        add_lap(phases, "stage", lap)
        rows += len(features)
        log.info("shard %d: chunk of %d rows staged, %d so far (not committed)", shard, len(features), rows)
    lap = time.perf_counter()
    params = {"model_version": model_version, "run_id": run_id}
    # Writers of the live table take turns for the short history+upsert step of an increment, so that
    # overlapping runs each compare against the other's committed result and never log the same change twice.
    # A full rescore never takes this lock per shard: only its publish step does, once.
    locks.xact_lock(cur, locks.SEGMENT_WRITE)
    lap = add_lap(phases, "wait", lap)
    cur.execute(_GONE_SQL)
    if cur.rowcount:
        log.info("shard %d: %d customers deleted since they were read; not written", shard, cur.rowcount)
    cur.execute(_HISTORY_SQL, params)
    changed = int(cur.fetchone()[0])
    cur.execute(_UPSERT_SQL, params)
    cur.execute("DELETE FROM segmentation.score_queue WHERE run_id = %s AND shard = %s", (run_id, shard))
    add_lap(phases, "write", lap)
    return finish_shard(shard, rows, changed, started, phases)


def iter_chunks(
    cur: Any, query: str, params: dict[str, Any], chunk_size: int, after: int, phases: dict[str, float]
) -> Iterator[pd.DataFrame]:
    """Feature rows of ``query`` (keyset-paged on ``customer_id > %(after)s``), ``chunk_size`` at a time."""
    while True:
        lap = time.perf_counter()
        features = read_features(cur, query, {**params, "after": after, "limit": chunk_size})
        add_lap(phases, "read", lap)
        if features.empty:
            return
        yield features
        after = int(features[CUSTOMER_ID].iloc[-1])
        log.debug("chunk of %d rows done (peak RSS %.0f MB)", len(features), peak_rss_mb())


def finish_shard(shard: int, rows: int, changed: int, started: float, phases: dict[str, float]) -> ShardResult:
    """The shard's result, logged."""
    seconds = time.perf_counter() - started
    log.info(
        "shard %d: %d rows scored, %d segment changes, %.1f s (%s; peak RSS %.0f MB)",
        shard,
        rows,
        changed,
        seconds,
        ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()),
        peak_rss_mb(),
    )
    return ShardResult(
        shard=shard,
        rows=rows,
        changed_segments=changed,
        seconds=seconds,
        phases={k: round(v, 3) for k, v in phases.items()},
    )


def add_lap(phases: dict[str, float], phase: str, since: float) -> float:
    """Add the seconds since ``since`` to ``phase``; returns now."""
    now = time.perf_counter()
    phases[phase] += now - since
    return now
