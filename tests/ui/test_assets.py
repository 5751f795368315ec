"""The nightly DAG announces refreshed segments as an Asset event with the run's counts, and that event
schedules the example consumer DAG."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segmentation.config import SEGMENTS_ASSET_NAME
from tests.helpers import load_generated, query
from tests.ui.conftest import FAST

pytestmark = [pytest.mark.airflow, pytest.mark.db]


def test_finalise_emits_the_segments_asset_event_which_schedules_the_crm_export(
    airflow_db, dagbag, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select, update

    from segmentation import tasks

    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    load_generated(600, seed=3, labelled_share=0.6)
    tasks.run_nightly("before-airflow")  # a champion, so that the DAG run below does not train
    load_generated(50, seed=8, start_id=10_001, labelled_share=0.0)

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == "segmentation_crm_export").values(is_paused=False))

    run = dagbag.dags["segmentation_nightly"].test(logical_date=datetime(2026, 11, 20, 2, tzinfo=UTC))
    assert run.state == "success"

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == SEGMENTS_ASSET_NAME, AssetEvent.source_run_id == run.run_id)
        ).all()  # fmt: skip  (the session's Airflow database also holds the DAG tests' runs)
        assert len(events) == 1
        extra = events[0].extra
        queued = set(session.scalars(select(AssetDagRunQueue.target_dag_id)).all())
    counts = dict(query("SELECT segment, count(*) FROM segmentation.customer_segments GROUP BY 1"))
    assert extra["run_id"] == run.run_id
    assert extra["customers"] == sum(counts.values()) == 650
    assert extra["segment_counts"] == counts
    assert extra["scored_this_run"] == 50
    assert "segmentation_crm_export" in queued  # the scheduler creates its run from this queue entry

    # The consumer's task, given that event, reports the run's counts and its segment changes.
    summary = tasks.crm_export_summary([extra])
    assert summary["runs"][0]["customers"] == 650
    assert (
        summary["runs"][0]["segment_changes"]
        == query("SELECT count(*) FROM segmentation.segment_changes WHERE run_id = %s", (run.run_id,))[0][0]
    )


def test_the_consumer_dag_is_scheduled_on_the_segments_asset_and_tagged_example(dagbag) -> None:
    dag = dagbag.dags["segmentation_crm_export"]
    assert "example" in dag.tags
    assert SEGMENTS_ASSET_NAME in repr(dag.timetable.asset_condition)
    finalise = dagbag.dags["segmentation_nightly"].get_task("finalise")
    assert [o.name for o in finalise.outlets] == [SEGMENTS_ASSET_NAME]
