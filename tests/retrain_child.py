"""``segmentation_retrain`` run by ``dag.test()`` in a child process (as a worker runs it: the task runner's
timeouts need the main thread), while the test answers its review as Airflow's UI or scheduler would.

The child inherits ``os.environ``: the same customer database and Airflow metadata database as the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from segmentation.config import REVIEW_TASK_ID
from tests.airflow_setup import DAGS, ROOT

RETRAIN = "segmentation_retrain"
WAIT_SECONDS = 300

RUN_RETRAIN = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).dags["segmentation_retrain"]
run = dag.test(run_conf=json.loads(sys.argv[2]))
print("RESULT " + json.dumps({"run_id": run.run_id, "state": str(run.state)}))
"""


class Background:
    """``dag.test()`` of segmentation_retrain in a child process; ``result()`` waits for its DagRun."""

    def __init__(self, run_conf: dict[str, Any], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", RUN_RETRAIN, str(DAGS), json.dumps(run_conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def result(self) -> SimpleNamespace:
        try:
            self.process.wait(WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the retrain run did not finish:\n{self.log.read_text()[-3000:]}")
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("RESULT ")]
        assert lines, self.log.read_text()[-3000:]
        return SimpleNamespace(dag_id=RETRAIN, **json.loads(lines[-1].removeprefix("RESULT ")))

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(30)


def awaiting_review(started: Background) -> str:
    """Wait until the run's review task awaits input (in Airflow's metadata database); returns the run's id."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if not started.alive():
            pytest.fail(f"the run ended without awaiting a review:\n{started.log.read_text()[-3000:]}")
        with create_session() as session:
            row = session.execute(
                select(TaskInstance.run_id, TaskInstance.state)
                .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
                .where(
                    TaskInstance.dag_id == RETRAIN, TaskInstance.task_id == REVIEW_TASK_ID, DagRun.state == "running"
                )
            ).first()
        if row is not None and str(row.state) == "awaiting_input":
            return row.run_id
        time.sleep(1)
    pytest.fail("the review task never awaited input")
