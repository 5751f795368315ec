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

import pytest

from segmentation import tasks
from segmentation.config import DB_POOL_NAME
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from tests.conftest import admin_url, drop_database
from tests.distributed.stack import (
    copy_database,
    deploy,
    fetch,
    redis_answers,
    run_nightly,
    segments,
    task_states,
    wait_for,
)
from tests.helpers import db_url

pytestmark = [pytest.mark.airflow, pytest.mark.db]
log = logging.getLogger(__name__)

N_CUSTOMERS = 4000
SHARD_SIZE = 400  # 10 shards


@pytest.fixture(scope="module", autouse=True)
def need_redis() -> None:
    if not redis_answers():
        pytest.skip("no Redis server answers at 127.0.0.1:6379; the Celery test needs it as its broker")


@pytest.fixture
def twin_databases(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """Two customer databases with the same cleaned customers and the same champion, none scored."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_customers(
        to_raw_text(generate_customers(N_CUSTOMERS, labelled_share=0.5, seed=11)), run_id="seed", url=db_url()
    )
    tasks.clean("prepare")
    tasks.build_features("prepare")
    assert tasks.retrain_if_due("prepare")["promoted"]
    twin = copy_database(admin_url(), fresh_db)
    try:
        yield fresh_db, twin
    finally:
        drop_database(twin)


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
    assert task_states(metadata_db, celery_run) == {"success": 7 + len(shards)}

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
