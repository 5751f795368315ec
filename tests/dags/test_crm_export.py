"""``dag.test()`` runs of the CRM export: the feed's changes after the watermark, in one file, exactly once.

``dag.test()`` does not raise when a task fails, so every run's state is asserted.
"""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from segmentation.config import CRM_EXPORT_ASSET_NAME, SEGMENTS_ASSET_NAME
from segmentation.feed import file_name
from tests.helpers import execute, scalar

pytestmark = [pytest.mark.airflow, pytest.mark.db]


def add_changes(first: int, last: int, run_id: str) -> None:
    """History rows (first scorings) for customers ``first..last``; their feed rows follow by trigger."""
    execute(
        """INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version, run_id)
           SELECT i, NULL, 'D', 1, %s FROM generate_series(%s, %s) AS i""",
        (run_id, first, last),
    )


def export_events() -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent.extra)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.name == CRM_EXPORT_ASSET_NAME)
                .order_by(AssetEvent.id)
            )
        )


def test_the_export_dag_writes_each_change_once_and_announces_it(
    airflow_db, dagbag, fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "crm"
    monkeypatch.setenv("SEGMENTATION_EXPORT_DIR", str(directory))
    dag = dagbag.dags["segmentation_crm_export"]
    assert SEGMENTS_ASSET_NAME in repr(dag.timetable.asset_condition)
    assert [o.name for o in dag.get_task("export").outlets] == [CRM_EXPORT_ASSET_NAME]
    events = len(export_events())
    add_changes(1, 30, "night-a")
    add_changes(31, 45, "night-b")  # two nights, as when the export missed an Asset event

    first = dag.test(logical_date=datetime(2026, 11, 1, 3, tzinfo=UTC))
    assert first.state == "success"
    assert os.listdir(directory) == [file_name(1, 45)]
    with open(directory / file_name(1, 45), encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["customer_id"]) for r in rows] == list(range(1, 46))
    assert {r["run_id"] for r in rows} == {"night-a", "night-b"} and {r["event"] for r in rows} == {"entered"}
    assert scalar("SELECT last_change_id FROM segmentation.feed_consumers WHERE consumer = 'crm'") == 45
    extras = export_events()
    assert len(extras) == events + 1 and extras[-1]["file"] == file_name(1, 45) and extras[-1]["rows"] == 45

    # Nothing new: a success that writes no file and leaves the watermark.
    again = dag.test(logical_date=datetime(2026, 11, 2, 3, tzinfo=UTC))
    assert again.state == "success"
    assert os.listdir(directory) == [file_name(1, 45)]
    assert export_events()[-1]["rows"] == 0

    add_changes(100, 104, "night-c")
    third = dag.test(logical_date=datetime(2026, 11, 3, 3, tzinfo=UTC))
    assert third.state == "success"
    assert sorted(os.listdir(directory)) == [file_name(1, 45), file_name(46, 50)]
    assert scalar("SELECT last_change_id FROM segmentation.feed_consumers WHERE consumer = 'crm'") == 50
