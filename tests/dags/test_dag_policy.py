"""DagBag import checks and the team's DAG policy, for every DAG in dags/."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from tests.airflow_setup import DAGS

pytestmark = pytest.mark.airflow

EXPECTED = {"segmentation_nightly", "segmentation_retrain"}


def test_dagbag_has_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert EXPECTED <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_policy(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.start_date is not None and dag.start_date.utcoffset() == timedelta(0), "start_date must be UTC"
    assert dag.catchup is False
    assert dag.tags and "segmentation" in dag.tags
    assert dag.doc_md and len(dag.doc_md.strip()) > 100
    assert dag.default_args.get("retries", 0) >= 1
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_nightly_schedule_is_0200_utc_or_a_new_champion(dagbag) -> None:
    dag = dagbag.dags["segmentation_nightly"]
    cron = dag.timetable.timetable
    assert cron.expression == "0 2 * * *"
    assert str(cron.timezone) in {"UTC", "Timezone('UTC')"}
    assert "segmentation_champion_model" in repr(dag.timetable.asset_condition)
    assert "segmentation.customers" in repr(dag.timetable.asset_condition)
    assert type(dag.timetable.asset_condition).__name__ == "AssetAny"  # either one starts a run


def test_retrain_is_manual_with_params(dagbag) -> None:
    dag = dagbag.dags["segmentation_retrain"]
    assert dag.schedule is None
    assert set(dag.params) == {"force_promote", "cv_folds", "row_cap", "candidates"}


def test_announce_task_updates_the_champion_asset(dagbag) -> None:
    task = dagbag.dags["segmentation_retrain"].get_task("announce_champion")
    assert [o.name for o in task.outlets] == ["segmentation_champion_model"]


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_parsing_a_dag_file_imports_nothing_heavy(path) -> None:
    """DAG files are parsed often: no pandas, scikit-learn, database driver or project pipeline at parse time."""
    # Airflow itself may load a database driver; only what the DAG file adds on top counts.
    code = (
        "import runpy, sys; import airflow.sdk; before = set(sys.modules); runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('pandas', 'sklearn', 'psycopg2', 'joblib', 'segmentation.pipeline', 'segmentation.db')"
        " if m in sys.modules and m not in before]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"heavy imports at parse time: {out.stdout}"


def test_scoring_shards_run_in_the_database_pool_that_every_setup_creates(dagbag) -> None:
    from segmentation.config import DB_POOL_NAME

    assert dagbag.dags["segmentation_nightly"].get_task("score").pool == DB_POOL_NAME
    root = DAGS.parent
    for setup in ("scripts/demo.sh", "scripts/up.sh", "docker-compose.yaml"):
        assert f"airflow pools set {DB_POOL_NAME} " in (root / setup).read_text(), setup
