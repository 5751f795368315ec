"""The ``default_args`` every DAG shares: retries, an execution timeout per task, and the failure callback.

Read from the settings (environment only, no database) when a DAG file is parsed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from segmentation.config import Settings, get_settings

# Training retries at most once: a failed fit rarely succeeds on the same data and costs the most.
TRAIN_MAX_RETRIES = 1


def default_args(settings: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    """Retries with exponential backoff, ``execution_timeout`` from settings and ``on_failure_callback``."""
    from segmentation.airflow_tasks import on_task_failure

    settings = settings or get_settings()
    args: dict[str, Any] = {
        "owner": "data-team",
        "retries": settings.task_retries,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        "execution_timeout": timedelta(minutes=settings.task_timeout_minutes),
        "on_failure_callback": on_task_failure,
    }
    args.update(overrides)
    return args


def training_task_args(settings: Settings | None = None) -> dict[str, Any]:
    """Operator arguments of a task that trains: its own timeout and at most one retry."""
    settings = settings or get_settings()
    return {
        "retries": min(settings.task_retries, TRAIN_MAX_RETRIES),
        "execution_timeout": timedelta(minutes=settings.train_timeout_minutes),
    }


def review_args(settings: Settings | None = None) -> dict[str, Any] | None:
    """Arguments of segmentation_retrain's approval task when approval is required, else None (no such task).

    The answer waits at most ``approval_timeout_hours``; then the default, Reject, is taken.
    """
    settings = settings or get_settings()
    if settings.promotion_approval != "required":
        return None
    return {"response_timeout": timedelta(hours=settings.approval_timeout_hours), "defaults": ["Reject"]}
