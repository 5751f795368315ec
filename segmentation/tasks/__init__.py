"""The pipeline's steps, one function per Airflow task: each reads tables, writes tables, returns small figures.

Airflow tasks (through ``segmentation.airflow_tasks``) and the CLI call the same functions, so every step runs the
same with or without Airflow. This layer reads the settings when it is not handed them, and passes them to the
core modules as arguments. By stage:

- ``runs``: run bookkeeping and the SQL helpers the steps share;
- ``prepare``: clean and features;
- ``retraining``: training, the gate and promotion;
- ``review``, ``approval``: approval before promotion (hold a challenger, record the reviewer's decision);
- ``score``: scoring in shards and finalise;
- ``export``: the CRM export of the segment change feed.
"""

from __future__ import annotations

from typing import Any

from segmentation.config import Settings
from segmentation.tasks.approval import record_review
from segmentation.tasks.export import crm_export
from segmentation.tasks.prepare import build_features, clean, labelled_features, typed_clean_frame
from segmentation.tasks.retraining import evaluate_and_promote, promote_version, retrain_if_due, train
from segmentation.tasks.runs import new_run_id, start_run, where
from segmentation.tasks.score import (
    Progress,
    crm_export_summary,
    finalise,
    plan_scoring,
    publish_scoring,
    score_all,
    score_shard,
    segments_event_extra,
)

__all__ = [
    "Progress",
    "build_features",
    "clean",
    "crm_export",
    "crm_export_summary",
    "evaluate_and_promote",
    "finalise",
    "labelled_features",
    "new_run_id",
    "plan_scoring",
    "promote_version",
    "publish_scoring",
    "record_review",
    "retrain_if_due",
    "run_nightly",
    "score_all",
    "score_shard",
    "segments_event_extra",
    "start_run",
    "train",
    "typed_clean_frame",
]


def run_nightly(
    run_id: str | None = None,
    *,
    url: str | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The whole nightly run in one process: clean, features, retrain when due, score, finalise."""
    run_id = run_id or new_run_id()
    url, settings = where(url, settings)
    start_run(run_id, "cli", url=url, settings=settings)
    summary = {
        "run_id": run_id,
        "clean": clean(run_id, url=url, settings=settings),
        "features": build_features(run_id, url=url, settings=settings),
        "retrain": retrain_if_due(run_id, url=url, settings=settings),
        "score": score_all(run_id, url=url, settings=settings, progress=progress),
    }
    summary["finalise"] = finalise(run_id, url=url, settings=settings)
    return summary
