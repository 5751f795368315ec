"""Airflow reads its configuration when it is first imported, so the fixtures here set its environment before
any test imports it (registered once for the whole session from tests/conftest.py, so the DAG and UI tests
share one Airflow environment): a throw-away AIRFLOW_HOME, this project's dags/ and plugins/, and a
metadata database on the same real PostgreSQL server as the tests' customer databases. The database is
created only when a test asks for Airflow, and dropped at the end of the session.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"


@pytest.fixture(scope="session")
def airflow_env() -> Iterator[str]:
    """Airflow's environment and its metadata database URL (created here, dropped afterwards)."""
    assert "airflow.settings" not in sys.modules, "Airflow was imported before its test environment was set"
    url = create_database("seg_airflow")
    home = tempfile.mkdtemp(prefix="segmentation-airflow-home-")
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url.replace("postgresql://", "postgresql+psycopg2://", 1),
            # dag.test() cannot run a DAG with a Deadline Alert (apache/airflow#73428): the nightly DAG's freshness
            # deadline is off here; tests/dags/test_deadline.py runs it with a real scheduler.
            "SEGMENTATION_FRESHNESS_DEADLINE_HOURS": "0",
        }
    )
    yield url
    if "airflow.settings" in sys.modules:
        from airflow import settings

        settings.dispose_orm()
    drop_database(url)


@pytest.fixture(scope="session")
def airflow_db(airflow_env: str) -> None:
    """Airflow's metadata schema and the scoring pool, created once per session."""
    from airflow.models.pool import Pool
    from airflow.utils.db import initdb

    from segmentation.config import DB_POOL_NAME, DB_POOL_SLOTS_DEFAULT

    initdb()
    Pool.create_or_update_pool(DB_POOL_NAME, DB_POOL_SLOTS_DEFAULT, "segmentation scoring shards", False)


@pytest.fixture(scope="session")
def dagbag(airflow_env: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))
