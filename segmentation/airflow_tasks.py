"""The edge between Airflow and the task layer: what a DAG's task calls.

Inside an Airflow task the settings are read here, once per call, and handed down as values:
- the customer database is ``SEGMENTATION_DATABASE_URL`` if set, else the Airflow connection ``segmentation_db``
  (``SEGMENTATION_AIRFLOW_CONN_ID``). A missing connection is a ConfigError naming it: no Airflow process ever
  starts the embedded demo server;
- the training login is ``SEGMENTATION_TRAINING_DATABASE_URL``, else the connection ``segmentation_db_training``
  when it exists, else the customer database's;
- the model signing key is ``SEGMENTATION_MODEL_SIGNING_KEY``, else the Airflow Variable
  ``segmentation_model_signing_key``; only the embedded demo database may do without.

A fault that no retry can mend (a ConfigError, bad data, an unknown model version) fails the task at once
with ``AirflowFailException``; anything else (a refused connection, a serialization failure, a killed worker)
keeps the task's retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

# Light imports only: dag_defaults imports this module when a DAG file is parsed.
from segmentation.config import TRAINING_CONN_ID, Settings, get_settings
from segmentation.errors import ConfigError, DataError, NotFoundError

log = logging.getLogger(__name__)

T = TypeVar("T")
# Faults that a retry cannot mend.
PERMANENT = (ConfigError, DataError, NotFoundError)
_announced: set[tuple[str, str]] = set()


def connection_url(conn_id: str) -> str | None:
    """The URL of Airflow connection ``conn_id``, or None when it is not defined."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException
    from sqlalchemy.engine import URL

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    # Built from the fields rather than get_uri(), so that a socket-directory host survives.
    host = conn.host or None
    socket = {"host": host} if host and host.startswith("/") else {}
    return URL.create(
        "postgresql",
        username=conn.login or None,
        password=conn.password or None,
        host=None if socket else host,
        port=None if socket else conn.port,
        database=conn.schema or None,
        query=socket,
    ).render_as_string(hide_password=False)


def _variable(key: str) -> str | None:
    """The Airflow Variable ``key``, or None when it is not set."""
    from airflow.sdk import Variable

    return Variable.get(key, default=None)


def resolve(settings: Settings, *, require_key: bool = True) -> Settings:
    """``settings`` with the database URLs and the signing key resolved inside Airflow (module docstring)."""
    from segmentation import signing

    url = settings.database_url or connection_url(settings.airflow_conn_id)
    if not url:
        raise ConfigError(
            f"the Airflow connection {settings.airflow_conn_id!r} (the customer database) is not defined; set "
            f"AIRFLOW_CONN_{settings.airflow_conn_id.upper()} or add it under Admin > Connections"
        )
    training = settings.training_database_url or connection_url(TRAINING_CONN_ID) or url
    key = settings.model_signing_key or _variable(signing.KEY_VARIABLE)
    resolved = replace(
        settings, database_url=url, training_database_url=training, model_signing_key=key, alerts_connection_here=True
    )
    if require_key:
        signing.signing_key(resolved)  # no key: a ConfigError naming the variable, before any work
    _announce(url, training)
    return resolved


def task_settings() -> Settings:
    """The settings of a task in Airflow, read now and resolved (:func:`resolve`)."""
    return resolve(get_settings())


def _announce(url: str, training: str) -> None:
    """Log once per process which databases it uses, without passwords."""
    from segmentation.db import redact

    if (url, training) in _announced:
        return
    _announced.add((url, training))
    log.info("customer database: %s; training login: %s", redact(url), redact(training))


@contextmanager
def fail_fast() -> Iterator[None]:
    """Turn a fault that no retry can mend into ``AirflowFailException`` (the original is its cause)."""
    try:
        yield
    except PERMANENT as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def run(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a task-layer step with the task's resolved settings (its database URLs and signing key), then
    report the tables it read and wrote as lineage (segmentation.lineage)."""
    from segmentation import lineage

    lineage.fresh_collector()
    with fail_fast():
        settings = task_settings()
        result = step(*args, settings=settings, **kwargs)
    lineage.report(getattr(step, "__name__", ""), settings.database_url)
    return result


def promote(run_id: str, params: dict[str, Any], dag_run: Any, champion_event: Any) -> dict[str, Any]:
    """The ``segmentation_promote`` task: promote or roll back to ``params["version"]`` as the user who
    triggered the run, and put the change in the champion Asset event; skipped when nothing changed."""
    from segmentation.tasks import promote_version

    user = getattr(dag_run, "triggering_user_name", None) or "airflow"
    with fail_fast():
        settings = task_settings()
        result = promote_version(
            run_id, int(params["version"]), user=user, reason=params.get("reason") or "", settings=settings
        )
    if not result["changed"]:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"model version {result['version']} already is the champion; nothing to do")
    champion_event.extra = {"version": result["version"], "promoted_by": user, "action": result["action"]}
    return result


def on_task_failure(context: Any) -> None:
    """``on_failure_callback``: record the failed run and raise the alert, on the task's customer database."""
    from segmentation import alerts

    try:
        settings = resolve(get_settings(), require_key=False)  # a missing key is worth recording too
    except Exception as exc:  # nowhere to record it; the task's own log has the cause
        log.error("the failure could not be recorded: %s", alerts.one_line(exc))
        return
    alerts.on_task_failure(context, url=settings.database_url, settings=settings)


def on_deadline_missed(context: dict[str, Any], hours: float) -> None:
    """The nightly DAG's Deadline Alert callback (a ``SyncCallback``, run by the executor on a worker, where
    the customer database connection exists): raise the ``deadline_missed`` alert naming the run and the step
    still running. ``context`` is what Airflow's scheduler hands a deadline callback: the DAG run and the
    deadline."""
    from segmentation import freshness

    dag_run = context.get("dag_run") or {}
    run_id = dag_run.get("dag_run_id") or dag_run.get("run_id")
    dag_id = dag_run.get("dag_id") or "segmentation_nightly"
    deadline_time = str((context.get("deadline") or {}).get("deadline_time", "?"))
    if not run_id:
        raise ConfigError(f"the deadline callback got no DAG run in its context; keys: {sorted(context)}")
    # Only the customer database: a callback process may look up connections but, unlike a task, is refused
    # (not told "not found") for one that does not exist, such as the optional training login's.
    settings = get_settings()
    url = settings.database_url or connection_url(settings.airflow_conn_id)
    if not url:
        raise ConfigError(f"the Airflow connection {settings.airflow_conn_id!r} (the customer database) is not defined")
    settings = replace(settings, database_url=url, alerts_connection_here=True)
    step = freshness.alert_missed_deadline(
        run_id, dag_id, deadline_time, hours, url=settings.database_url, settings=settings
    )
    log.warning("run %s missed its freshness deadline (%s); still running: %s", run_id, deadline_time, step)


def not_a_backfill(dag_run: Any) -> bool:
    """The nightly DAG's first task (``@task.short_circuit``): False for a backfill run, which skips every
    other task. The pipeline always scores the current customers with the current champion, so a past date
    has nothing to recompute, and a backfill must neither overwrite today's segments nor add history."""
    run_type = getattr(dag_run, "run_type", None)
    if str(getattr(run_type, "value", run_type)) == "backfill":
        log.info(
            "run %s is a backfill (logical date %s): nothing to recompute for a past date; every task skipped, "
            "nothing written",
            getattr(dag_run, "run_id", "?"),
            getattr(dag_run, "logical_date", None),
        )
        return False
    return True
