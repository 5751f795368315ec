"""Scoring and finalise: plan the run's scoring in shards, score one shard, publish a full rescore, close the run
with its totals and quality figures, and what consumers of the refreshed segments receive."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from threadpoolctl import threadpool_limits

from segmentation import alerts, planning, realised, rebuild, registry, scoring, signing
from segmentation.config import Settings
from segmentation.db import connect
from segmentation.distributions import refresh_segment_distributions
from segmentation.errors import ModelError
from segmentation.monitoring import record_run_metrics, share_moves
from segmentation.tasks.runs import step, where

log = logging.getLogger(__name__)

# Wraps the planned shards of a run, e.g. in a progress bar: list of shards in, iterable of the same out.
Progress = Callable[[list[dict[str, int]]], Iterable[dict[str, int]]]


def plan_scoring(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> list[dict[str, int]]:
    """Plan the run's scoring (an increment of the queued changes, or a full rescore) in shards; one mapped task
    per returned item."""
    url, settings = where(url, settings)
    with step(run_id, "plan", url, settings) as (cur, figures):
        current = registry.champion(cur)
        if current is None:
            raise ModelError(
                "no champion model to score with; run `segmentation train` or the segmentation_retrain DAG"
            )
        planned = planning.plan(
            cur,
            run_id=run_id,
            model_version=current.version,
            shard_size=settings.shard_size,
            max_shards=settings.max_shards,
        )
        figures.update(model_version=current.version, mode=planned.mode, shards=planned.shards, rows=planned.rows)
        cur.execute(
            "UPDATE segmentation.pipeline_runs SET model_version = %s WHERE run_id = %s",
            (current.version, run_id),
        )
    return [{"shard": s, "model_version": current.version} for s in range(planned.shards)]


def score_shard(
    run_id: str, shard: int, model_version: int, *, url: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Score one planned shard with the given model version, atomically."""
    url, settings = where(url, settings)
    with step(run_id, f"score_shard_{shard}", url, settings) as (cur, figures):
        planned = planning.load(cur, run_id)
        loading = time.perf_counter()
        model = registry.load_model(cur, model_version, settings.model_cache_dir, key=signing.signing_key(settings))
        # Unpickling imports scikit-learn: a fixed cost per process, whatever the shard's size.
        load_seconds = round(time.perf_counter() - loading, 3)
        with threadpool_limits(settings.threads):
            if planned.mode == planning.REBUILD:
                result = rebuild.score_range(
                    cur,
                    model,
                    run_id=run_id,
                    shard=shard,
                    model_version=model_version,
                    table=planned.table,
                    bounds=planned.bounds,
                    chunk_size=settings.chunk_size,
                )
            else:
                result = scoring.score_queued(
                    cur,
                    model,
                    run_id=run_id,
                    shard=shard,
                    model_version=model_version,
                    chunk_size=settings.chunk_size,
                )
        figures.update(
            mode=planned.mode,
            rows=result.rows,
            changed_segments=result.changed_segments,
            phases={"load": load_seconds, **result.phases},
            worker=worker_identity(settings),
        )
    return figures


def worker_identity(settings: Settings) -> str:
    """Which worker process ran a task: ``worker_name:pid``."""
    return f"{settings.worker_name}:{os.getpid()}"


def finalise(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Close the run: publish a full rescore (swap), totals and data-quality figures in ``drift_metrics``.

    A run that failed before and now succeeds (a re-run of the same run id) is marked 'success' again. A
    segment share that moved more than ``SEGMENTATION_SHARE_ALERT`` points since the last run raises an alert, and
    so does the champion's accuracy on late labels falling below its holdout accuracy (``segmentation.realised``).
    Returns the run's counts (customers, per segment, scored this run, reject share), which the nightly DAG
    puts in the extra of its ``segmentation.customer_segments`` Asset event.
    """
    url, settings = where(url, settings)
    with step(run_id, "finalise", url, settings) as (cur, figures):
        phases = dict.fromkeys(("publish", "metrics", "distributions"), 0.0)
        lap = time.perf_counter()
        figures.update(planning.publish(cur, run_id))
        lap = scoring.add_lap(phases, "publish", lap)
        cur.execute("SELECT segment, customers FROM segmentation.segment_counts")
        counts = {segment: int(n) for segment, n in cur.fetchall()}
        cur.execute(
            """SELECT coalesce(sum((value->>'rows')::bigint), 0) FROM segmentation.pipeline_runs, jsonb_each(steps)
               WHERE run_id = %s AND starts_with(key, 'score_shard_')""",
            (run_id,),
        )
        scored = int(cur.fetchone()[0])
        figures.update(record_run_metrics(cur, run_id, segment_counts=counts, scored=scored))
        moved = share_moves(cur, run_id, settings.share_alert_points)
        dropped = realised.check(cur, settings)  # the champion's accuracy on late labels (once per version)
        lap = scoring.add_lap(phases, "metrics", lap)
        figures["distributions"] = refresh_segment_distributions(cur, run_id, counts=counts, scored=scored)
        scoring.add_lap(phases, "distributions", lap)
        figures.update(
            customers=sum(counts.values()),
            segment_counts=counts,
            phases={k: round(v, 3) for k, v in phases.items()},
        )
        cur.execute(
            """UPDATE segmentation.pipeline_runs SET status = 'success', finished_at = now(),
                      failed_task = NULL, error = NULL
               WHERE run_id = %s""",
            (run_id,),
        )
    if moved:
        text = ", ".join(f"{s} {m['before']:.1%} -> {m['after']:.1%}" for s, m in moved.items())
        alerts.raise_alert(
            "share_moved",
            f"segment shares moved more than {settings.share_alert_points:g} points since run "
            f"{next(iter(moved.values()))['since_run']}: {text}",
            run_id=run_id,
            task_id="finalise",
            details=moved,
            url=url,
            settings=settings,
        )
    if dropped:
        alerts.raise_alert(
            realised.KIND,
            realised.alert_text(dropped),
            run_id=run_id,
            task_id="finalise",
            details=dropped,
            url=url,
            settings=settings,
        )
    return figures


def segments_event_extra(run_id: str, counts: dict[str, Any]) -> dict[str, Any]:
    """The extra of the ``segmentation.customer_segments`` Asset event: small JSON counts of the run."""
    keys = ("customers", "segment_counts", "segment_shares", "scored_this_run", "reject_share")
    return {"run_id": run_id, **{k: counts[k] for k in keys if k in counts}}


def crm_export_summary(
    event_extras: list[dict[str, Any]], *, url: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """What a CRM export of the refreshed runs would send: per run, its counts and its segment changes."""
    url, settings = where(url, settings)
    runs = [e["run_id"] for e in event_extras if e.get("run_id")]
    with connect(url, settings) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT run_id, count(*) FROM segmentation.segment_changes WHERE run_id = ANY(%s) GROUP BY run_id""",
            (runs,),
        )
        changes = dict(cur.fetchall())
    summary = {"runs": [{**e, "segment_changes": int(changes.get(e.get("run_id"), 0))} for e in event_extras]}
    log.info("CRM export (example): %s", summary)
    return summary


def score_all(
    run_id: str, *, url: str | None = None, settings: Settings | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Plan and score every shard in this process (the CLI's path; Airflow maps the shards instead).

    ``progress`` wraps the planned shards, e.g. in a progress bar.
    """
    url, settings = where(url, settings)
    planned = plan_scoring(run_id, url=url, settings=settings)
    shards = progress(planned) if progress else planned
    results = [score_shard(run_id, p["shard"], p["model_version"], url=url, settings=settings) for p in shards]
    publish_scoring(run_id, url=url, settings=settings)
    return {"shards": len(planned), "rows": sum(r["rows"] for r in results)}


def publish_scoring(run_id: str, *, url: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Swap a run's full rescore in (finalise does it too; the second call does nothing)."""
    url, settings = where(url, settings)
    with step(run_id, "publish", url, settings) as (cur, figures):
        figures.update(planning.publish(cur, run_id))
    return figures
