"""The promotion DAG, and configuration faults inside Airflow: they fail at once, naming what is missing.

``dag.test()`` does not raise when a task fails, so every run's state is asserted, and so is the number of
tries a failed task took: a fault that no retry can mend must not spend one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from segmentation import tasks
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from tests.airflow_setup import DAGS
from tests.helpers import db_url, scalar

pytestmark = [pytest.mark.airflow, pytest.mark.db]


def task_tries(dag_run) -> dict[str, tuple[str, int]]:
    """Each task instance of a run: (state, try number)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state, TaskInstance.try_number).where(
                TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        ).all()
    return {task_id: (str(state), int(tries)) for task_id, state, tries in rows}


def champion_events() -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from segmentation.config import CHAMPION_ASSET_NAME

    with create_session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.name == CHAMPION_ASSET_NAME)
            )
        )


def champion() -> int:
    return int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))


@pytest.fixture
def two_versions(airflow_db, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """A scored database whose champion is v1, with a candidate v2."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_customers(to_raw_text(generate_customers(800, labelled_share=0.6, seed=21)), run_id="seed", url=db_url())
    tasks.run_nightly("promote-seed")
    tasks.start_run("promote-train", "segmentation_retrain")
    candidate = tasks.train("promote-train", trigger="manual")["version"]
    return champion(), candidate


def test_the_promotion_dag_promotes_rolls_back_and_announces_the_champion(dagbag, two_versions) -> None:
    old, candidate = two_versions
    dag = dagbag.dags["segmentation_promote"]
    assert dag.is_paused_upon_creation is False  # works where new DAGs start paused
    events = champion_events()

    promoted = dag.test(run_conf={"version": candidate})
    assert promoted.state == "success"
    assert champion() == candidate
    assert scalar("SELECT promoted_by FROM segmentation.model_versions WHERE version = %s", (candidate,)) == "dag_test"
    assert champion_events() == events + 1  # the outlet: the nightly rescores with it

    # The champion again: nothing changes, the task is skipped and no Asset event triggers a rescore.
    again = dag.test(run_conf={"version": candidate})
    assert again.state == "success" and task_tries(again)["promote"][0] == "skipped"
    assert champion_events() == events + 1

    back = dag.test(run_conf={"version": old})
    assert back.state == "success" and champion() == old
    notes = scalar("SELECT notes FROM segmentation.model_versions WHERE version = %s", (old,))
    assert f"rolled back to by dag_test (run {back.run_id}" in notes
    assert champion_events() == events + 2


def test_promoting_an_unknown_version_fails_at_once(dagbag, two_versions) -> None:
    old, _ = two_versions
    failed = dagbag.dags["segmentation_promote"].test(run_conf={"version": 999})
    assert failed.state == "failed"
    assert task_tries(failed)["promote"] == ("failed", 1)  # no retry spent on it
    assert champion() == old
    error = scalar("SELECT error FROM segmentation.pipeline_runs WHERE run_id = %s", (failed.run_id,))
    assert "model version 999 does not exist" in error


def test_a_retried_promotion_that_had_committed_still_announces(two_versions) -> None:
    _, candidate = two_versions
    first = tasks.promote_version("promote__retry", candidate, user="ops")
    assert first["changed"] and first["action"] == "promoted"
    retried = tasks.promote_version("promote__retry", candidate, user="ops")
    assert retried["changed"]  # the same run: its Asset event must not be lost
    other = tasks.promote_version("promote__other", candidate, user="ops")
    assert not other["changed"] and other["action"].startswith("none")


def test_no_signing_key_fails_the_nightly_run_at_once_naming_it(
    airflow_db, dagbag, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEGMENTATION_MODEL_SIGNING_KEY")
    run = dagbag.dags["segmentation_nightly"].test()
    assert run.state == "failed"
    assert task_tries(run)["start"] == ("failed", 1)
    error = scalar("SELECT error FROM segmentation.pipeline_runs WHERE run_id = %s", (run.run_id,))
    assert "SEGMENTATION_MODEL_SIGNING_KEY is not set" in error


def test_a_missing_connection_fails_at_once_and_starts_no_database(
    airflow_db, dagbag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segmentation.airflow_tasks import resolve
    from segmentation.config import get_settings
    from segmentation.errors import ConfigError

    for name in ("SEGMENTATION_DATABASE_URL", "AIRFLOW_CONN_SEGMENTATION_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ConfigError, match="the Airflow connection 'segmentation_db'"):
        resolve(get_settings())

    run = dagbag.dags["segmentation_nightly"].test()
    assert run.state == "failed"
    assert task_tries(run)["start"] == ("failed", 1)
    assert not list(tmp_path.rglob("pgdata")) and not list(tmp_path.rglob("PG_VERSION"))


@pytest.mark.parametrize(("name", "value"), [("SEGMENTATION_TASK_RETRIES", "lots"), ("SEGMENTATION_SHARD_SIZE", "0")])
def test_a_bad_setting_is_a_dag_import_error_naming_it(
    airflow_env: str, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=str(DAGS))
    # Every DAG that reads the settings at parse time is an import error naming the setting; the example CRM
    # export reads none.
    assert set(bag.dags) == {"segmentation_crm_export"}
    assert {Path(path).stem for path in bag.import_errors} == {
        "segmentation_nightly", "segmentation_retrain", "segmentation_promote"
    }  # fmt: skip
    assert all(name in message for message in bag.import_errors.values()), bag.import_errors
