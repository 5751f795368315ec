"""Airflow reads its configuration when it is first imported, so its environment is set here, before any
test in this folder imports it: a throw-away AIRFLOW_HOME, this project's dags/, and a metadata database
on the same real PostgreSQL server as the tests' customer databases.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"

_METADATA_URL = create_database("seg_airflow")
os.environ.update(
    {
        "AIRFLOW_HOME": tempfile.mkdtemp(prefix="segmentation-airflow-home-"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _METADATA_URL.replace("postgresql://", "postgresql+psycopg2://", 1),
    }
)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """Airflow's metadata schema, created once per session and dropped afterwards."""
    from airflow.utils.db import initdb

    initdb()
    from airflow.models.pool import Pool

    from segmentation.config import DB_POOL_NAME, DB_POOL_SLOTS_DEFAULT

    Pool.create_or_update_pool(DB_POOL_NAME, DB_POOL_SLOTS_DEFAULT, "segmentation scoring shards", False)
    yield
    from airflow import settings

    settings.dispose_orm()
    drop_database(_METADATA_URL)


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))
