"""OpenLineage events of a nightly run: ``airflow dags test`` with the provider's file transport, in a process
of its own (the provider reads its configuration once per process), and the tables in the events' inputs and
outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from segmentation import tasks
from segmentation.lineage import STEP_TABLES
from tests.helpers import load_generated, scalar

pytestmark = [pytest.mark.airflow, pytest.mark.db]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAG_ID = "segmentation_nightly"
# Airflow task -> task-layer step, whose tables the task's events must name.
TASK_STEPS = {"clean": "clean", "features": "build_features", "score": "score_shard", "finalise": "finalise"}


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _names(datasets: list[dict]) -> set[str]:
    return {d["name"] for d in datasets}


def test_nightly_run_emits_lineage_naming_the_tables(
    airflow_db, fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_generated(1500, seed=3)
    tasks.clean("prepare")
    tasks.build_features("prepare")
    assert tasks.retrain_if_due("prepare")["promoted"]
    load_generated(200, seed=4, start_id=100_001)  # new customers for clean and features to take

    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "segmentation-test",
    }
    env.pop("AIRFLOW__OPENLINEAGE__DISABLED", None)
    env["SEGMENTATION_FRESHNESS_DEADLINE_HOURS"] = "0"  # dag.test() cannot run a deadline (apache/airflow#73428)
    done = subprocess.run(
        ["airflow", "dags", "test", DAG_ID], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == 1700

    database = make_url(fresh_db).database
    complete = [e for e in _events(events_file) if e["eventType"] == "COMPLETE" and "job" in e]
    by_task: dict[str, list[dict]] = {}
    for event in complete:
        by_task.setdefault(event["job"]["name"].removeprefix(f"{DAG_ID}."), []).append(event)
    for task_id, step in TASK_STEPS.items():
        assert by_task.get(task_id), f"no COMPLETE event of task {task_id}; jobs: {sorted(by_task)}"
        reads, writes = STEP_TABLES[step]
        for event in by_task[task_id]:  # score: one event per mapped shard
            assert _names(event["inputs"]) == {f"{database}.segmentation.{t}" for t in reads}, event["inputs"]
            assert _names(event["outputs"]) == {f"{database}.segmentation.{t}" for t in writes}, event["outputs"]
            namespaces = {d["namespace"] for d in event["inputs"] + event["outputs"]}
            # A socket-directory URL (the embedded server) has no host name: the server is on this host.
            host = make_url(fresh_db).host or "localhost"
            assert namespaces == {f"postgres://{host}:{make_url(fresh_db).port or 5432}"}
    # A task that touches no table of its own reports none.
    assert by_task.get("start") and not by_task["start"][0].get("inputs")
