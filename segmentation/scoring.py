"""Scoring: incremental work selection, shard planning, chunked prediction and atomic upserts."""

from __future__ import annotations

import logging
import math
import resource
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segmentation import locks
from segmentation.columns import CUSTOMER_ID, MODEL_INPUT_COLUMNS, PROBABILITY_COLUMNS, SEGMENTS
from segmentation.errors import ModelError
from segmentation.pgcopy import copy_binary_in, copy_frame_out

log = logging.getLogger(__name__)

# Customers to score: never scored, changed since their score, or scored by another model.
WORK_SQL = """
SELECT f.customer_id
FROM segmentation.customer_features AS f
LEFT JOIN segmentation.customer_segments AS s USING (customer_id)
WHERE s.customer_id IS NULL
   OR s.source_updated_at IS DISTINCT FROM f.source_updated_at
   OR s.model_version <> %(model_version)s
"""

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


def plan(cur: Any, *, run_id: str, model_version: int, shard_size: int, max_shards: int) -> tuple[list[int], int]:
    """Queue this run's work in contiguous id ranges, one per shard; returns the shard numbers and the rows queued.

    One pass over the work: each customer's shard comes from its rank and the total, with the shard count
    of ``shard_count``. Re-planning the same run replaces its queue, so a retried plan task is harmless.
    """
    cur.execute("DELETE FROM segmentation.score_queue WHERE run_id = %s", (run_id,))
    cur.execute(
        f"""INSERT INTO segmentation.score_queue (run_id, shard, customer_id)
            SELECT %(run_id)s,
                   ((ranked.rank - 1)
                    * LEAST(%(max_shards)s, ceil(ranked.total::numeric / %(shard_size)s))::bigint
                    / ranked.total)::integer,
                   ranked.customer_id
            FROM (SELECT w.customer_id, row_number() OVER (ORDER BY w.customer_id) AS rank,
                         count(*) OVER () AS total
                  FROM ({WORK_SQL}) AS w) AS ranked""",
        {"run_id": run_id, "model_version": model_version, "max_shards": max_shards, "shard_size": shard_size},
    )
    n_rows = cur.rowcount
    n_shards = shard_count(n_rows, shard_size, max_shards)
    log.info("run %s: %d customers to score in %d shards", run_id, n_rows, n_shards)
    return list(range(n_shards)), n_rows


def read_features(cur: Any, query: str, params: dict[str, Any]) -> pd.DataFrame:
    """Feature rows via COPY, typed by name."""
    frame = copy_frame_out(cur, query, params)
    frame[CUSTOMER_ID] = frame[CUSTOMER_ID].astype("int64")
    return frame.astype(NUMERIC_DTYPES)


def predict_frame(model: Any, features: pd.DataFrame) -> pd.DataFrame:
    """Segment and the four probabilities per customer, mapped from the model's classes by label."""
    missing = [c for c in MODEL_INPUT_COLUMNS if c not in features.columns]
    if missing:
        raise ModelError(f"the data lacks columns the model expects: {missing}")
    classes = [str(c) for c in getattr(model, "classes_", [])]
    if sorted(classes) != sorted(SEGMENTS):
        raise ModelError(f"model classes {classes} are not the segments {list(SEGMENTS)}")
    proba = model.predict_proba(features.loc[:, list(MODEL_INPUT_COLUMNS)])
    ordered = proba[:, [classes.index(s) for s in SEGMENTS]]
    out = pd.DataFrame(ordered, columns=list(PROBABILITY_COLUMNS), index=features.index)
    out.insert(0, "segment", np.asarray(SEGMENTS)[ordered.argmax(axis=1)])
    out.insert(0, CUSTOMER_ID, features[CUSTOMER_ID].to_numpy())
    return out


@dataclass(frozen=True)
class ShardResult:
    """What one shard did."""

    shard: int
    rows: int
    changed_segments: int
    seconds: float
    # Seconds per phase: read (COPY out), predict, stage (binary COPY in), wait (for the write lock),
    # write (history and upsert).
    phases: dict[str, float]


_STAGE_COLUMNS = [CUSTOMER_ID, "segment", *PROBABILITY_COLUMNS, "source_updated_at"]
_HISTORY_SQL = """
INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version, run_id)
SELECT st.customer_id, s.segment, st.segment, %(model_version)s, %(run_id)s
FROM score_stage AS st
LEFT JOIN segmentation.customer_segments AS s USING (customer_id)
WHERE s.segment IS DISTINCT FROM st.segment
"""
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
    """Score the customers queued for one shard, chunk by chunk into a staging table, then upsert them in the
    caller's transaction.

    The caller commits once per shard, so a shard is written completely or not at all, and a
    retried shard recomputes the same values.
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
    after, rows = -1, 0
    phases = dict.fromkeys(("read", "predict", "stage", "wait", "write"), 0.0)
    while True:
        chunk_started = lap = time.perf_counter()
        features = read_features(cur, query, {"run_id": run_id, "shard": shard, "after": after, "limit": chunk_size})
        lap = _add_lap(phases, "read", lap)
        if features.empty:
            break
        scored = predict_frame(model, features)
        scored["source_updated_at"] = features["source_updated_at"].to_numpy()
        lap = _add_lap(phases, "predict", lap)
        copy_binary_in(cur, scored, "score_stage", _STAGE_COLUMNS)
        _add_lap(phases, "stage", lap)
        rows += len(features)
        after = int(features[CUSTOMER_ID].iloc[-1])
        elapsed = time.perf_counter() - chunk_started
        log.info(
            "shard %d: chunk of %d rows at %.0f rows/s (peak RSS %.0f MB)",
            shard,
            len(features),
            len(features) / max(elapsed, 1e-9),
            peak_rss_mb(),
        )
    lap = time.perf_counter()
    params = {"model_version": model_version, "run_id": run_id}
    # Writers of customer_segments take turns for the short history+upsert step, so that overlapping
    # runs each compare against the other's committed result and never log the same change twice.
    locks.xact_lock(cur, locks.SEGMENT_WRITE)
    lap = _add_lap(phases, "wait", lap)
    cur.execute(_HISTORY_SQL, params)
    changed = cur.rowcount
    cur.execute(_UPSERT_SQL, params)
    _add_lap(phases, "write", lap)
    seconds = time.perf_counter() - started
    log.info(
        "shard %d: %d rows scored, %d segment changes, %.1f s (%s)",
        shard,
        rows,
        changed,
        seconds,
        ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()),
    )
    return ShardResult(
        shard=shard,
        rows=rows,
        changed_segments=changed,
        seconds=seconds,
        phases={k: round(v, 3) for k, v in phases.items()},
    )


def _add_lap(phases: dict[str, float], phase: str, since: float) -> float:
    """Add the seconds since ``since`` to ``phase``; returns now."""
    now = time.perf_counter()
    phases[phase] += now - since
    return now


def release_run(cur: Any, run_id: str) -> int:
    """Drop a run's queued scoring work (a failed or abandoned run); returns the work items released."""
    cur.execute("DELETE FROM segmentation.score_queue WHERE run_id = %s", (run_id,))
    released = cur.rowcount
    if released:
        log.info("run %s: released %d queued scoring items", run_id, released)
    return released
