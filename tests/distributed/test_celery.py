"""The nightly DAG on CeleryExecutor with two workers, against the same run on LocalExecutor.

A real deployment on this machine: Redis at 127.0.0.1:6379 as the broker, PostgreSQL as Airflow's
metadata database and Celery result backend, and an api-server, a scheduler, a dag-processor and two
Celery workers started here as separate processes with separate working directories. Two customer
databases hold identical customers and the same champion model (one is a template copy of the other);
the Celery run scores one and a LocalExecutor run the other, and their segments must be equal.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from segmentation import tasks
from segmentation.config import DB_POOL_NAME
from segmentation.data import generate_customers
from segmentation.loading import load_customers, to_raw_text
from tests.conftest import admin_url, create_database, database_url, drop_database
from tests.distributed.stack import AirflowStack, redis_answers, wait_for

pytestmark = [pytest.mark.airflow, pytest.mark.db]
log = logging.getLogger(__name__)

DAG_ID = "segmentation_nightly"
N_CUSTOMERS = 4000
SHARD_SIZE = 400  # 10 shards
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module", autouse=True)
def need_redis() -> None:
    if not redis_answers():
        pytest.skip("no Redis server answers at 127.0.0.1:6379; the Celery test needs it as its broker")


def fetch(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture
def twin_databases(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """Two customer databases with the same cleaned customers and the same champion, none scored."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_customers(to_raw_text(generate_customers(N_CUSTOMERS, labelled_share=0.5, seed=11)), run_id="seed")
    tasks.clean("prepare")
    tasks.build_features("prepare")
    assert tasks.retrain_if_due("prepare")["promoted"]
    twin_name = f"seg_twin_{uuid.uuid4().hex[:10]}"
    source = make_url(fresh_db).database
    conn = psycopg2.connect(admin_url())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{twin_name}" TEMPLATE "{source}"')
    conn.close()
    twin = database_url(admin_url(), twin_name)
    try:
        yield fresh_db, twin
    finally:
        drop_database(twin)


@pytest.fixture
def metadata_db() -> Iterator[str]:
    url = create_database("seg_celery_meta")
    try:
        yield url
    finally:
        drop_database(url)


def run_nightly(stack: AirflowStack, metadata: str, run_id: str) -> str:
    """Trigger the nightly DAG and wait for the run to finish; its final state."""
    wait_for("the DAG parsed", lambda: bool(fetch(metadata, "SELECT 1 FROM dag WHERE dag_id = %s", (DAG_ID,))), 180)
    stack.run("dags", "unpause", DAG_ID)
    stack.run("dags", "trigger", DAG_ID, "--run-id", run_id)
    state: list[str] = []

    def finished() -> bool:
        stack.check_alive()
        rows = fetch(metadata, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
        state[:] = [rows[0][0]] if rows else []
        return bool(state) and state[0] in ("success", "failed")

    wait_for(f"run {run_id} finished", finished, RUN_TIMEOUT_S, every=2)
    return state[0]


def task_states(metadata: str, run_id: str) -> dict[str, int]:
    rows = fetch(
        metadata,
        "SELECT state, count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s GROUP BY state",
        (DAG_ID, run_id),
    )
    return {str(state): int(n) for state, n in rows}


def segments(url: str) -> list[tuple]:
    return fetch(
        url,
        """SELECT customer_id, segment, p_a, p_b, p_c, p_d, model_version, source_updated_at
           FROM segmentation.customer_segments ORDER BY customer_id""",
    )


def deploy(tmp_path: Path, name: str, metadata: str, customers: str, executor: str) -> AirflowStack:
    return AirflowStack(
        tmp_path / name, metadata, executor=executor, customer_url=customers, queue=f"seg_{uuid.uuid4().hex[:12]}"
    )


def test_nightly_on_two_celery_workers_equals_local_executor(
    tmp_path: Path, twin_databases: tuple[str, str], metadata_db: str
) -> None:
    started = time.monotonic()
    celery_db, local_db = twin_databases
    env = {"SEGMENTATION_SHARD_SIZE": str(SHARD_SIZE)}

    celery = deploy(tmp_path, "celery", metadata_db, celery_db, "CeleryExecutor")
    celery.env.update(env)
    celery.run("db", "migrate", timeout=600)
    celery.run("pools", "set", DB_POOL_NAME, "4", "segmentation scoring shards")
    celery_run = f"celery__{uuid.uuid4().hex[:8]}"
    try:
        celery.start_core()
        celery.start_worker("worker-1", concurrency=2)
        celery.start_worker("worker-2", concurrency=2)
        wait_for("the api-server", celery.api_ready, 120)
        assert celery.segmentation_plugin_served(), "the api-server did not mount the Segmentation plugin"
        state = run_nightly(celery, metadata_db, celery_run)
        assert state == "success", (task_states(metadata_db, celery_run), celery.tail(celery.root / "worker-1.log"))
    finally:
        celery.stop()
    celery_seconds = time.monotonic() - started

    steps = fetch(celery_db, "SELECT steps FROM segmentation.pipeline_runs WHERE run_id = %s", (celery_run,))[0][0]
    shards = {name: figures for name, figures in steps.items() if name.startswith("score_shard_")}
    assert len(shards) == steps["plan"]["shards"] >= 8
    assert sum(f["rows"] for f in shards.values()) == N_CUSTOMERS
    by_worker: dict[str, int] = {}
    for figures in shards.values():
        worker = figures["worker"].rsplit(":", 1)[0]
        by_worker[worker] = by_worker.get(worker, 0) + 1
    assert set(by_worker) == {"worker-1", "worker-2"}, by_worker
    assert task_states(metadata_db, celery_run) == {"success": 6 + len(shards)}

    local = deploy(tmp_path, "local", metadata_db, local_db, "LocalExecutor")
    local.env.update(env)
    local_run = f"local__{uuid.uuid4().hex[:8]}"
    try:
        local.start_core()
        wait_for("the api-server", local.api_ready, 120)
        assert run_nightly(local, metadata_db, local_run) == "success", task_states(metadata_db, local_run)
    finally:
        local.stop()

    celery_rows, local_rows = segments(celery_db), segments(local_db)
    assert len(celery_rows) == N_CUSTOMERS
    assert celery_rows == local_rows
    log.info(
        "Celery run %s: %.0f s from start to finish, %d shards by worker %s; LocalExecutor run equal on %d rows; "
        "whole test %.0f s",
        celery_run,
        celery_seconds,
        len(shards),
        by_worker,
        len(local_rows),
        time.monotonic() - started,
    )
