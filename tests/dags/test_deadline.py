"""The nightly DAG's freshness deadline through Airflow's own deadline machinery: a real scheduler finds the
missed deadline of a run and hands its SyncCallback to the LocalExecutor, whose worker process raises the
``deadline_missed`` alert in the customer database.

``dag.test()`` neither checks deadlines nor runs their callbacks (and cannot run a DAG with one at all:
apache/airflow#73428), so this test starts an api-server, a scheduler and a dag-processor
(tests/dags/scheduled.py). The step ``features`` is kept running past the deadline by a lock the test holds on
``segmentation.customer_features``; when the alert is in, the lock goes and the run finishes.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest

from tests.dags.scheduled import local_airflow, new_run_id, prepare_customers
from tests.distributed.stack import DAG_ID, fetch, wait_for, wait_run
from tests.helpers import load_generated, query

pytestmark = [pytest.mark.airflow, pytest.mark.db]

DEADLINE_HOURS = 0.005  # 18 s


def test_nightly_dag_declares_the_freshness_deadline(monkeypatch: pytest.MonkeyPatch, airflow_env: str) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineReference

    monkeypatch.setenv("SEGMENTATION_FRESHNESS_DEADLINE_HOURS", "2.5")
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "segmentation_nightly.py")).dags[DAG_ID]
    (alert,) = dag.deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert alert.interval == timedelta(hours=2.5)
    assert isinstance(alert.callback, SyncCallback)
    assert alert.callback.path == "segmentation.airflow_tasks.on_deadline_missed"
    assert alert.callback.kwargs == {"hours": 2.5}


def test_missed_deadline_alert_names_the_run_and_the_running_step(
    fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_customers(monkeypatch)
    load_generated(300, seed=4, start_id=100_001)  # new customers: features has work to do
    env = {
        "SEGMENTATION_FRESHNESS_DEADLINE_HOURS": str(DEADLINE_HOURS),
        "SEGMENTATION_LOCK_TIMEOUT_MS": "600000",  # features waits for the test's lock instead of failing
    }
    with local_airflow(tmp_path / "airflow", fresh_db, env) as (stack, metadata):
        run_id = new_run_id("deadline")
        blocker = psycopg2.connect(fresh_db)
        try:
            with blocker.cursor() as cur:
                cur.execute("LOCK TABLE segmentation.customer_features IN ACCESS EXCLUSIVE MODE")
            stack.run("dags", "trigger", DAG_ID, "--run-id", run_id)

            def alerted() -> bool:
                stack.check_alive()
                return bool(query("SELECT 1 FROM segmentation.alerts WHERE kind = 'deadline_missed'"))

            wait_for("the deadline_missed alert", alerted, 300, every=2)
            # Airflow's own record: the deadline of this run is missed and its callback ran.
            missed = fetch(
                metadata,
                """SELECT d.missed FROM deadline d JOIN dag_run r ON r.id = d.dagrun_id
                   WHERE r.dag_id = %s AND r.run_id = %s""",
                (DAG_ID, run_id),
            )
            assert missed == [(True,)]
            state = fetch(
                metadata, "SELECT state FROM task_instance WHERE run_id = %s AND task_id = 'features'", (run_id,)
            )
            assert state == [("running",)], state
        finally:
            blocker.rollback()
            blocker.close()
        assert wait_run(stack, metadata, run_id, timeout=600) == "success"

    ((alert_run, dag_id, task_id, message, details),) = query(
        "SELECT run_id, dag_id, task_id, message, details FROM segmentation.alerts WHERE kind = 'deadline_missed'"
    )
    assert (alert_run, dag_id, task_id) == (run_id, DAG_ID, "features")
    assert run_id in message and "step still running: features" in message, message
    assert details["running_step"] == "features" and details["hours"] == DEADLINE_HOURS
    assert set(details["steps_done"]) == {"clean"}
