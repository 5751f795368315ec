"""The failure path under ``dag.test()``: a planted failure is recorded, its queue released and announced.

A shard task fails after its rows were written inside its transaction: the run ends failed, nothing of the
shard is visible, ``pipeline_runs`` names the task and the error, ``score_queue`` holds nothing of the run,
and the alert reaches a local SMTP sink naming the DAG, run, task and reason. A later successful run of the
same run id (its failed tasks again) marks it 'success' again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from tests.helpers import db_url, query, scalar
from tests.smtp_sink import smtp_sink

pytestmark = [pytest.mark.airflow, pytest.mark.db]

PLANTED = "planted failure after the shard's rows were written"


def _run(dag, day: int):
    return dag.test(logical_date=datetime(2026, 11, day, 2, tzinfo=UTC))


def test_a_failed_run_is_recorded_released_and_announced(
    airflow_db, dagbag, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segmentation import rebuild

    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "400")
    monkeypatch.setenv("SEGMENTATION_ALERTS_TO", "oncall@example.com")
    load_customers(to_raw_text(generate_customers(1000, labelled_share=0.5, seed=3)), run_id="seed", url=db_url())
    dag = dagbag.dags["segmentation_nightly"]
    # No retries here: dag.test() would wait out the retry delay.
    for task_id in ("score", "retrain_if_due"):
        monkeypatch.setattr(dag.get_task(task_id), "retries", 0)

    # The first night rescores everyone: shards write into a fresh table that finalise swaps in.
    real = rebuild.score_range
    written: list[int] = []

    def fail_after_writing(cur, *args, **kwargs):
        written.append(real(cur, *args, **kwargs).rows)  # rows written inside the shard's own transaction
        raise RuntimeError(PLANTED)

    monkeypatch.setattr(rebuild, "score_range", fail_after_writing)
    with smtp_sink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SEGMENTATION_ALERTS", sink.airflow_connection())
        failed = _run(dag, 10)
    assert failed.state == "failed"
    run_id = failed.run_id
    # The first failing shard had written its rows (inside its transaction) before it failed; its failure
    # released the run's unpublished rescore, so the shards after it found no work.
    assert written[0] > 0 and written[1:] == [0] * (len(written) - 1)
    status, failed_task, error = query(
        "SELECT status, failed_task, error FROM segmentation.pipeline_runs WHERE run_id = %s", (run_id,)
    )[0]
    assert status == "failed"
    assert failed_task.startswith("score[")
    assert error == f"RuntimeError: {PLANTED}"
    assert scalar("SELECT count(*) FROM segmentation.score_queue WHERE run_id = %s", (run_id,)) == 0
    # Nothing half-written: no segment, no history row of the failed shards.
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == 0
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == 0
    # Stored, and delivered through the SMTP connection, naming DAG, run, task and reason.
    alerts = query(
        "SELECT kind, dag_id, task_id, message, delivered FROM segmentation.alerts WHERE run_id = %s", (run_id,)
    )
    assert {a[0] for a in alerts} == {"failed_run"}
    assert all(a[1] == "segmentation_nightly" and a[2].startswith("score[") and a[4] for a in alerts)
    assert sink.messages, "no alert reached the SMTP sink"
    for message in sink.messages:
        assert message.recipients == ["oncall@example.com"]
        assert "segmentation_nightly" in message.subject and run_id in message.subject
        for needle in ("DAG: segmentation_nightly", f"run: {run_id}", "task: score[", PLANTED):
            assert needle in message.body, needle

    # The failed tasks run again for the same run id (as clearing them in Airflow does: plan, the shards,
    # finalise), without the planted failure: the run is recorded as a success, with the error cleared.
    from segmentation import tasks

    monkeypatch.setattr(rebuild, "score_range", real)
    monkeypatch.delenv("AIRFLOW_CONN_SEGMENTATION_ALERTS")
    for planned in tasks.plan_scoring(run_id):
        tasks.score_shard(run_id, planned["shard"], planned["model_version"])
    tasks.finalise(run_id)
    assert query("SELECT status, failed_task, error FROM segmentation.pipeline_runs WHERE run_id = %s", (run_id,)) == [
        ("success", None, None)
    ]
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == 1000


def test_every_task_has_a_timeout_and_the_failure_callback(dagbag) -> None:
    from segmentation.airflow_tasks import on_task_failure
    from segmentation.config import get_settings

    settings = get_settings()
    for dag_id in ("segmentation_nightly", "segmentation_retrain"):
        for task in dagbag.dags[dag_id].tasks:
            assert task.execution_timeout is not None, task.task_id
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert on_task_failure in callbacks, task.task_id
    train_tasks = [dagbag.dags["segmentation_nightly"].get_task("retrain_if_due")]
    train_tasks.append(dagbag.dags["segmentation_retrain"].get_task("train"))
    for task in train_tasks:
        assert task.retries <= 1
        assert task.execution_timeout.total_seconds() == settings.train_timeout_minutes * 60
    score = dagbag.dags["segmentation_nightly"].get_task("score")
    assert score.execution_timeout.total_seconds() == settings.task_timeout_minutes * 60
