"""A real LocalExecutor deployment for the tests that need Airflow's scheduler (deadline callbacks, backfills),
which ``dag.test()`` does not exercise: an api-server (the execution API the task processes talk to), a
scheduler and a dag-processor, started as processes by tests/distributed/stack.py; and a customer database
with a champion model.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from segmentation import tasks
from segmentation.config import DB_POOL_NAME
from tests.conftest import create_database, drop_database
from tests.distributed.stack import DAG_ID, AirflowStack, fetch, wait_for
from tests.helpers import load_generated


def prepare_customers(monkeypatch: pytest.MonkeyPatch, rows: int = 1500) -> None:
    """Customers cleaned, with features and a champion model, in the test's database (``fresh_db``)."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_generated(rows, seed=3)
    tasks.clean("prepare")
    tasks.build_features("prepare")
    assert tasks.retrain_if_due("prepare")["promoted"]


@contextmanager
def local_airflow(root: Path, customer_url: str, env: Mapping[str, str]) -> Iterator[tuple[AirflowStack, str]]:
    """A started LocalExecutor stack on a new metadata database, the nightly DAG parsed and unpaused; yields
    the stack and the metadata URL, and stops and drops both afterwards."""
    metadata = create_database("seg_sched_meta")
    stack = AirflowStack(root, metadata, executor="LocalExecutor", customer_url=customer_url, queue="default")
    stack.env.update(env)
    try:
        stack.run("db", "migrate", timeout=600)
        stack.run("pools", "set", DB_POOL_NAME, "2", "segmentation scoring shards")
        stack.start_core()
        wait_for("the api-server", stack.api_ready, 180)
        wait_for("the DAG parsed", lambda: bool(fetch(metadata, "SELECT 1 FROM dag WHERE dag_id = %s", (DAG_ID,))), 180)
        stack.run("dags", "unpause", DAG_ID)
        yield stack, metadata
    finally:
        stack.stop()
        drop_database(metadata)


def new_run_id(prefix: str) -> str:
    return f"{prefix}__{uuid.uuid4().hex[:8]}"
