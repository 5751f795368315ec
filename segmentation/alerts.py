"""Alerts and the failure record: every alert is logged and kept in ``segmentation.alerts``, then delivered.

Delivery uses Airflow's notifier mechanism: ``SmtpNotifier`` (SMTP provider) with the Airflow connection
named by ``SEGMENTATION_ALERTS_CONN_ID`` (default ``segmentation_alerts``) and the recipients in
``SEGMENTATION_ALERTS_TO``. Without that connection (or outside an Airflow process, where no connection is
looked up unless it is set in the environment as ``AIRFLOW_CONN_...``) an alert is logged and stored only,
never lost.

``on_task_failure`` is the ``on_failure_callback`` of every task (``segmentation.dag_defaults``): it marks the
run failed in ``pipeline_runs`` with the failing task and a one-line error, releases the run's queued
scoring work and raises a ``failed_run`` alert.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from segmentation.config import Settings
from segmentation.errors import ConfigError

log = logging.getLogger(__name__)

# The kinds the alerts table allows (its CHECK constraint, widened by the migrations that add one).
KINDS = (
    "failed_run",
    "batch_refused",
    "drift_retrain",
    "challenger_refused",
    "share_moved",
    "approval_pending",  # sql/014
    "realised_quality_drop",  # sql/016
    "deadline_missed",  # sql/017
)
ERROR_CHARS = 500


@dataclass(frozen=True)
class Alert:
    """One alert: what happened, where (DAG, run, task) and why."""

    kind: str
    reason: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def subject(self) -> str:
        return f"[segmentation] {self.kind}: DAG {self.dag_id or '-'}, run {self.run_id or '-'}"

    def text(self) -> str:
        lines = [
            f"alert: {self.kind}",
            f"DAG: {self.dag_id or '-'}",
            f"run: {self.run_id or '-'}",
            f"task: {self.task_id or '-'}",
            f"reason: {self.reason}",
        ]
        if self.details:
            lines.append("details: " + json.dumps(self.details, default=str, sort_keys=True))
        return "\n".join(lines)


def one_line(error: BaseException | str | None) -> str:
    """An error as one short line: its type and the first line of its message."""
    if error is None:
        return "unknown error"
    if isinstance(error, BaseException):
        first = (str(error).strip().splitlines() or [""])[0]
        text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    else:
        text = (str(error).strip().splitlines() or [""])[0]
    return text[:ERROR_CHARS]


def deliver(alert: Alert, settings: Settings) -> str:
    """Send ``alert`` with Airflow's ``SmtpNotifier``; returns how it went (never raises)."""
    if not settings.alerts_to:
        return "not sent: SEGMENTATION_ALERTS_TO is empty"
    conn_id = settings.alerts_conn_id
    if not settings.alerts_connection_here:
        return f"not sent: no Airflow connection {conn_id!r} here"
    try:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn_id)  # absent: not configured, so log and table only
    except Exception as exc:
        return f"not sent: Airflow connection {conn_id!r} is not available ({type(exc).__name__})"
    notifier = SmtpNotifier(
        to=list(settings.alerts_to),
        from_email=settings.alerts_from,
        subject=alert.subject(),
        html_content="<pre>" + html.escape(alert.text()) + "</pre>",
        smtp_conn_id=conn_id,
    )
    try:
        # notify() sends the given subject and body as they are: alert text is never rendered as a template.
        notifier.notify({"dag_id": alert.dag_id, "run_id": alert.run_id, "task_id": alert.task_id})
    except Exception as exc:
        log.warning("alert %s could not be delivered through %r: %s", alert.kind, conn_id, one_line(exc))
        return f"failed: {one_line(exc)}"
    return f"sent to {', '.join(settings.alerts_to)} through {conn_id!r}"


def raise_alert(
    kind: str,
    reason: str,
    *,
    run_id: str | None = None,
    dag_id: str | None = None,
    task_id: str | None = None,
    details: dict[str, Any] | None = None,
    url: str,
    settings: Settings,
) -> Alert:
    """Log an alert, keep it in ``segmentation.alerts`` and deliver it; storing or sending never raises.

    ``dag_id`` defaults to the run's DAG in ``pipeline_runs``.
    """
    from segmentation.db import connect

    if kind not in KINDS:
        raise ConfigError(f"alert kind {kind!r} is not allowed; expected one of {list(KINDS)}")
    alert_id = None
    try:
        with connect(url) as conn, conn.cursor() as cur:
            if dag_id is None and run_id is not None:
                cur.execute("SELECT dag_id FROM segmentation.pipeline_runs WHERE run_id = %s", (run_id,))
                row = cur.fetchone()
                dag_id = row[0] if row else None
            alert = Alert(kind, reason, dag_id, run_id, task_id, details or {})
            cur.execute(
                """INSERT INTO segmentation.alerts (kind, dag_id, run_id, task_id, message, details)
                   VALUES (%s, %s, %s, %s, %s, %s) RETURNING alert_id""",
                (kind, dag_id, run_id, task_id, reason, json.dumps(alert.details, default=str)),
            )
            alert_id = cur.fetchone()[0]
    except Exception as exc:
        alert = Alert(kind, reason, dag_id, run_id, task_id, details or {})
        log.error("alert could not be stored: %s", one_line(exc))
    log.warning("ALERT %s: %s", kind, alert.text().replace("\n", "; "))
    delivery = deliver(alert, settings)
    log.info("alert %s delivery: %s", kind, delivery)
    if alert_id is not None:
        try:
            with connect(url) as conn, conn.cursor() as cur:
                cur.execute(
                    "UPDATE segmentation.alerts SET delivered = %s, delivery = %s WHERE alert_id = %s",
                    (delivery.startswith("sent"), delivery, alert_id),
                )
        except Exception as exc:
            log.error("alert delivery could not be recorded: %s", one_line(exc))
    return alert


def record_failure(cur: Any, run_id: str, dag_id: str | None, task_id: str, error: str) -> int:
    """Mark a run failed with its failing task and error, and release its queued work; returns items released."""
    from segmentation.planning import release_run

    cur.execute(
        """INSERT INTO segmentation.pipeline_runs (run_id, dag_id, status, failed_task, error, finished_at)
           VALUES (%s, %s, 'failed', %s, %s, now())
           ON CONFLICT (run_id) DO UPDATE SET status = 'failed', failed_task = EXCLUDED.failed_task,
                  error = EXCLUDED.error, finished_at = EXCLUDED.finished_at""",
        (run_id, dag_id, task_id, error),
    )
    return release_run(cur, run_id)


def on_task_failure(context: Any, *, url: str, settings: Settings) -> None:
    """Record the failed run of an Airflow task context, release its queue and raise a ``failed_run`` alert.

    Called (through segmentation.airflow_tasks) once a task has failed for good, after its retries; it never
    raises.
    """
    from segmentation.db import connect

    try:
        ti = context.get("ti") or context.get("task_instance")
        dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
        run_id = context.get("run_id") or getattr(ti, "run_id", None)
        task_id = getattr(ti, "task_id", None) or "?"
        map_index = getattr(ti, "map_index", -1)
        if isinstance(map_index, int) and map_index >= 0:
            task_id = f"{task_id}[{map_index}]"
        exception = context.get("exception")
        if type(exception).__name__ == "AirflowFailException" and exception.__cause__ is not None:
            exception = exception.__cause__  # the DAG wraps the package's error to skip retries
        error = one_line(exception)
        with connect(url) as conn, conn.cursor() as cur:
            released = record_failure(cur, run_id, dag_id, task_id, error)
        raise_alert(
            "failed_run",
            f"task {task_id} failed: {error}",
            run_id=run_id,
            dag_id=dag_id,
            task_id=task_id,
            details={"released_queue_items": released},
            url=url,
            settings=settings,
        )
    except Exception as exc:  # a failing callback must not hide the task's own failure
        log.exception("the failure callback could not record the failure: %s", one_line(exc))
