"""The freshness deadline of the nightly run: which step was still running when the deadline passed, and the
``deadline_missed`` alert that says so.

Airflow's Deadline Alert on ``segmentation_nightly`` (``dags/segmentation_nightly.py``) calls
``segmentation.airflow_tasks.on_deadline_missed`` when a run has not finished within
``SEGMENTATION_FRESHNESS_DEADLINE_HOURS`` of being queued; that edge resolves the database and calls
:func:`alert_missed_deadline` here.
"""

from __future__ import annotations

import logging
from typing import Any

from segmentation.config import Settings

log = logging.getLogger(__name__)

# The nightly DAG's tasks in order, each with the step names it records in ``pipeline_runs.steps`` when it
# commits (retrain_if_due records "train"/"promote" only when it trains; scoring one "score_shard_N" a shard).
NIGHTLY_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("clean", ("clean",)),
    ("features", ("features",)),
    ("retrain_if_due", ("train", "promote")),
    ("plan", ("plan",)),
    ("score", ("score_shard_",)),
    ("finalise", ("finalise",)),
)


def _task_of(step: str) -> int | None:
    """The position in NIGHTLY_STEPS of the task that records ``step``."""
    for position, (_, names) in enumerate(NIGHTLY_STEPS):
        if any(step == name or (name.endswith("_") and step.startswith(name)) for name in names):
            return position
    return None


def running_step(finished: dict[str, Any], planned_shards: int | None = None) -> str:
    """The nightly task still running, given the steps a run has committed (``pipeline_runs.steps``).

    Steps commit at their end, so it is the task after the last one that committed; scoring stays the running
    task until as many shards committed as plan made.
    """
    done = [position for step in finished if (position := _task_of(step)) is not None]
    if not done:
        return NIGHTLY_STEPS[0][0]
    following = NIGHTLY_STEPS[min(max(done) + 1, len(NIGHTLY_STEPS) - 1)][0]
    if following in ("score", "finalise") and "plan" in finished:
        scored = sum(1 for step in finished if step.startswith("score_shard_"))
        if planned_shards is None or scored < planned_shards:
            total = planned_shards if planned_shards is not None else "?"
            return f"score ({scored} of {total} shards committed)"
        return "finalise"
    return following


def _planned_shards(figures: dict[str, Any]) -> int | None:
    plan = figures.get("plan")
    if not isinstance(plan, dict):
        return None
    value = plan.get("shards")
    return int(value) if isinstance(value, int | float) else None


def run_steps(cur: Any, run_id: str) -> dict[str, Any]:
    """The steps ``run_id`` has committed, with their figures (empty when the run has no row yet)."""
    cur.execute("SELECT steps FROM segmentation.pipeline_runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return dict(row[0] or {}) if row else {}


def alert_missed_deadline(
    run_id: str, dag_id: str, deadline_time: str, hours: float, *, url: str, settings: Settings
) -> str:
    """Raise the ``deadline_missed`` alert naming the run and the step still running; returns that step."""
    from segmentation.alerts import raise_alert
    from segmentation.db import connect

    with connect(url, settings) as conn, conn.cursor() as cur:
        steps = run_steps(cur, run_id)
    step = running_step(steps, _planned_shards(steps))
    raise_alert(
        "deadline_missed",
        f"run {run_id} of {dag_id} has not published segments within {hours:g} h of being queued "
        f"(deadline {deadline_time}); step still running: {step}",
        run_id=run_id,
        dag_id=dag_id,
        task_id=step.split(" ")[0],
        details={"deadline": deadline_time, "hours": hours, "running_step": step, "steps_done": sorted(steps)},
        url=url,
        settings=settings,
    )
    return step
