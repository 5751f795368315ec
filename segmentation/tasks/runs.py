"""Run bookkeeping of the task layer: run ids, the audit row of a run, one transaction per step with its
figures in ``pipeline_runs``, and the SQL helpers the steps share (change queues, statistics after bulk writes).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from segmentation import signing
from segmentation.config import Settings, get_settings
from segmentation.db import connect, resolve_database_url

log = logging.getLogger(__name__)


def new_run_id(prefix: str = "cli") -> str:
    """A run id for work started outside Airflow."""
    return f"{prefix}__{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


def record_step(cur: Any, run_id: str, step: str, figures: dict[str, Any]) -> None:
    cur.execute(
        """INSERT INTO segmentation.pipeline_runs (run_id, steps) VALUES (%s, jsonb_build_object(%s, %s::jsonb))
           ON CONFLICT (run_id) DO UPDATE
           SET steps = pipeline_runs.steps || jsonb_build_object(%s, %s::jsonb)""",
        (run_id, step, json.dumps(figures), step, json.dumps(figures)),
    )


def where(url: str | None, settings: Settings | None) -> tuple[str, Settings]:
    """The customer database URL and the settings of a step: as given, else read here (the CLI's path)."""
    settings = settings or get_settings()
    url = url or resolve_database_url(settings)
    # Steps called with a URL hand it on: training and the signing key's demo check follow the same database.
    return url, settings if settings.database_url == url else replace(settings, database_url=url)


@contextmanager
def step(run_id: str, step: str, url: str, settings: Settings) -> Iterator[tuple[Any, dict[str, Any]]]:
    """One transaction for a step; its figures and duration are recorded in ``pipeline_runs`` on commit."""
    started = time.perf_counter()
    figures: dict[str, Any] = {}
    with connect(url, settings) as conn, conn.cursor() as cur:
        yield cur, figures
        figures["seconds"] = round(time.perf_counter() - started, 3)
        figures["finished_at"] = datetime.now(UTC).isoformat()
        record_step(cur, run_id, step, figures)
    log.info("run %s step %s: %s", run_id, step, figures)


def start_run(run_id: str, dag_id: str = "cli", url: str | None = None, settings: Settings | None = None) -> str:
    """Open (or reopen, on a re-run) the audit row of a run.

    Fails first, with a ConfigError naming the variable, when there is no model signing key.
    """
    url, settings = where(url, settings)
    signing.signing_key(settings)
    with connect(url, settings) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO segmentation.pipeline_runs (run_id, dag_id) VALUES (%s, %s)
               ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL""",
            (run_id, dag_id),
        )
    return run_id


# Change capture: each step takes the ids a trigger queued for it, inside its own transaction (a killed step
# leaves its queue intact; a row changed while the step runs is queued again for the next run). The taken ids
# go to a temp table that joins the source by primary key, so the cost follows the change, not the table.
_TAKE_SQL = """
CREATE TEMP TABLE {temp} (customer_id bigint PRIMARY KEY) ON COMMIT DROP;
WITH taken AS (DELETE FROM segmentation.{queue} RETURNING customer_id)
INSERT INTO {temp} SELECT customer_id FROM taken;
ANALYZE {temp};
"""


# A step that rewrote more than this share of its table refreshes the table's statistics (sql/012).
BULK_WRITE_SHARE = 0.1


def analyze_if_bulk(cur: Any, table: str, rows: int) -> bool:
    """ANALYZE ``segmentation.table`` when ``rows`` written exceed BULK_WRITE_SHARE of it or it has no statistics.

    The scoring shards page through id ranges with ORDER BY ... LIMIT, whose plan is only right with statistics.
    """
    if rows <= 0:
        return False
    cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (f"segmentation.{table}",))
    estimate = float(cur.fetchone()[0])
    if 0 <= estimate and rows <= BULK_WRITE_SHARE * estimate:
        return False
    cur.execute("SELECT segmentation.analyze_after_bulk_write(%s)", (table,))
    log.info("%s: %d rows written (estimate before: %.0f); statistics refreshed", table, rows, estimate)
    return True


def take_queue(cur: Any, queue: str, temp: str) -> int:
    """Move the ids of change queue ``queue`` into temp table ``temp`` (dropped at commit); how many."""
    if queue not in ("clean_pending", "features_pending") or temp not in ("clean_taken", "features_taken"):
        raise ValueError(f"unknown change queue {queue!r} or temp table {temp!r}")
    cur.execute(_TAKE_SQL.format(queue=queue, temp=temp))
    cur.execute(f"SELECT count(*) FROM {temp}")
    return int(cur.fetchone()[0])
