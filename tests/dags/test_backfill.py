"""An Airflow backfill of the nightly DAG is a safe no-op: created through Airflow's backfill REST API
(``POST /api/v2/backfills``, what the UI's Backfill dialog calls, as user ``admin``) and run by a real scheduler
with the LocalExecutor (``dag.test()`` cannot run a backfill's runs); each run succeeds with every task after
``not_a_backfill`` skipped, and nothing is written to the customer database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segmentation import tasks
from tests.dags.scheduled import local_airflow, prepare_customers
from tests.distributed.stack import DAG_ID, AirflowStack, Api, fetch, generated_passwords, wait_for
from tests.helpers import load_generated, query, scalar

pytestmark = [pytest.mark.airflow, pytest.mark.db]


def _snapshot() -> dict[str, object]:
    return {
        "segments": query("SELECT * FROM segmentation.customer_segments ORDER BY customer_id"),
        "history": scalar("SELECT count(*) FROM segmentation.segment_history"),
        "runs": query("SELECT run_id FROM segmentation.pipeline_runs ORDER BY run_id"),
        "features": scalar("SELECT count(*) FROM segmentation.customer_features"),
        "alerts": scalar("SELECT count(*) FROM segmentation.alerts"),
    }


def create_backfill(stack: AirflowStack, body: dict) -> dict:
    """``POST /api/v2/backfills`` as ``admin``, with the password SimpleAuthManager generated for it."""
    api = Api(f"http://127.0.0.1:{stack.api_port}")
    generated = stack.root / "api-server" / "airflow" / "simple_auth_manager_passwords.json.generated"
    passwords = generated_passwords(generated)
    status, reply = api.call("POST", "/api/v2/backfills", api.login("admin", passwords["admin"]), body)
    assert status == 200, (status, reply)
    return reply


def test_backfill_runs_skip_everything_and_write_nothing(
    fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare_customers(monkeypatch)
    tasks.score_all("today")  # today's segments, which a backfill must not touch
    load_generated(100, seed=8, start_id=200_001)  # pending changes, which a backfill must not take either
    before = _snapshot()
    assert before["segments"] and before["history"]

    with local_airflow(tmp_path / "airflow", fresh_db, {}) as (stack, metadata):
        window = {"from_date": "2026-11-01T00:00:00Z", "to_date": "2026-11-03T00:00:00Z"}
        backfill = create_backfill(stack, {"dag_id": DAG_ID, **window, "max_active_runs": 3})
        assert backfill["dag_id"] == DAG_ID and backfill["id"], backfill

        def runs() -> list[tuple]:
            stack.check_alive()
            return fetch(
                metadata, "SELECT run_id, state, run_type FROM dag_run WHERE dag_id = %s ORDER BY run_id", (DAG_ID,)
            )

        # Daily at 02:00 from 2026-11-01 to 2026-11-03 00:00: the nights of 1 and 2 November.
        wait_for("two backfill runs", lambda: len(runs()) == 2, 120)
        wait_for("the backfill runs finished", lambda: all(r[1] in ("success", "failed") for r in runs()), 300)
        done = runs()
        assert {(state, run_type) for _, state, run_type in done} == {("success", "backfill")}, done
        backfill_ids = [run_id for run_id, _, _ in done]
        states = fetch(
            metadata,
            "SELECT task_id, state, count(*) FROM task_instance WHERE dag_id = %s GROUP BY task_id, state",
            (DAG_ID,),
        )
        by_task = {task: (state, n) for task, state, n in states}
        assert by_task.pop("not_a_backfill") == ("success", 2)
        assert by_task and all(state == "skipped" for state, _ in by_task.values()), by_task
        assert {"start", "clean", "score", "finalise"} <= set(by_task)
        # No Asset event (with counts or otherwise) from a backfill run.
        events = fetch(
            metadata,
            "SELECT count(*) FROM asset_event WHERE source_dag_id = %s AND source_run_id = ANY(%s)",
            (DAG_ID, backfill_ids),
        )
        assert events == [(0,)]

    assert _snapshot() == before
    assert scalar("SELECT count(*) FROM segmentation.pipeline_runs WHERE run_id = ANY(%s)", (backfill_ids,)) == 0
