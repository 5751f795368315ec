"""The freshness deadline's running step, the lineage datasets and the backfill short-circuit, without a database."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from segmentation.airflow_tasks import not_a_backfill
from segmentation.config import get_settings
from segmentation.errors import ConfigError
from segmentation.freshness import running_step
from segmentation.lineage import step_uris, table_uri


@pytest.mark.parametrize(
    ("steps", "shards", "expected"),
    [
        ({}, None, "clean"),
        ({"clean": {}}, None, "features"),
        ({"clean": {}, "features": {}}, None, "retrain_if_due"),
        ({"clean": {}, "features": {}, "train": {}, "promote": {}}, None, "plan"),
        ({"clean": {}, "features": {}, "plan": {}}, 3, "score (0 of 3 shards committed)"),
        ({"clean": {}, "plan": {}, "score_shard_0": {}, "score_shard_2": {}}, 3, "score (2 of 3 shards committed)"),
        ({"clean": {}, "plan": {}, "score_shard_0": {}}, 1, "finalise"),
        ({"clean": {}, "features": {}, "plan": {}}, 0, "finalise"),
    ],
)
def test_running_step_is_the_task_after_the_last_committed_step(steps, shards, expected) -> None:
    assert running_step(steps, shards) == expected


def test_table_uris_name_the_server_database_and_table_without_the_login() -> None:
    url = "postgresql://seg:secret@db.example.com:6543/customers"
    assert table_uri(url, "customers") == "postgres://db.example.com:6543/customers/segmentation/customers"
    assert table_uri("postgresql:///seg?host=/tmp/sock", "x") == "postgres://localhost:5432/seg/segmentation/x"
    inputs, outputs = step_uris("build_features", url)
    assert [u.rsplit("/", 1)[1] for u in inputs] == ["clean_customers"]
    assert [u.rsplit("/", 1)[1] for u in outputs] == ["customer_features"]
    assert step_uris("start_run", url) == ([], [])
    assert all("secret" not in u for u in inputs + outputs)


@pytest.mark.parametrize(("run_type", "runs"), [("backfill", False), ("manual", True), ("scheduled", True)])
def test_only_a_backfill_run_is_short_circuited(run_type: str, runs: bool) -> None:
    from airflow.utils.types import DagRunType

    dag_run = SimpleNamespace(run_type=DagRunType(run_type), run_id="r", logical_date=None)
    assert not_a_backfill(dag_run) is runs
    assert not_a_backfill(SimpleNamespace(run_type=run_type, run_id="r")) is runs


def test_freshness_deadline_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGMENTATION_FRESHNESS_DEADLINE_HOURS", raising=False)
    assert get_settings().freshness_deadline_hours == 4.0
    monkeypatch.setenv("SEGMENTATION_FRESHNESS_DEADLINE_HOURS", "0.005")
    assert get_settings().freshness_deadline_hours == 0.005
    for bad in ("-1", "500", "soon"):
        monkeypatch.setenv("SEGMENTATION_FRESHNESS_DEADLINE_HOURS", bad)
        with pytest.raises(ConfigError, match="SEGMENTATION_FRESHNESS_DEADLINE_HOURS"):
            get_settings()
