"""Fixtures of the UI tests: a customer database scored by the nightly pipeline, Airflow's auth manager with
real users and tokens, and the Segmentation app mounted at /segmentation as Airflow mounts it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database
from tests.helpers import db_url

ROOT = Path(__file__).resolve().parents[2]
N_CUSTOMERS = 1500
BAD_IDS = range(900_001, 900_006)
USERS = "admin:admin,viewer:viewer,editor:user"
JWT_SECRET = "segmentation-ui-tests-only-secret-" + "0123456789abcdef" * 2

FAST = {
    "SEGMENTATION_CANDIDATES": "hist_gradient_boosting,logistic_regression",
    "SEGMENTATION_CV_FOLDS": "2",
    "SEGMENTATION_SHARD_SIZE": "500",
    "SEGMENTATION_TUNE_CANDIDATES": "2",
}


def _set_env(values: dict[str, str]) -> dict[str, str | None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    return before


def _restore(before: dict[str, str | None]) -> None:
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _plant_bad_rows() -> None:
    from segmentation.loading import load_customers, to_raw_text
    from segmentation.synthetic import generate_customers

    bad = to_raw_text(generate_customers(len(BAD_IDS), seed=9, start_id=BAD_IDS[0], labelled_share=0.0))
    bad["age"] = ["abc", "-5", "300", "abc", "17"]
    load_customers(bad, run_id="plant", url=db_url())


@pytest.fixture(scope="session")
def scored_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A customer database with two finished nightly runs (trained, scored, quarantine) and a second model."""
    from segmentation import tasks
    from segmentation.db import reset_url_cache
    from segmentation.migrations import migrate
    from tests.helpers import load_generated

    url = create_database("seg_ui")
    data = tmp_path_factory.mktemp("ui-data")
    before = _set_env(
        {
            "SEGMENTATION_DATABASE_URL": url,
            "SEGMENTATION_DATA_DIR": str(data / "data"),
            "SEGMENTATION_MODELS_DIR": str(data / "models"),
        }
    )
    reset_url_cache()
    try:
        migrate(url)
        fast = _set_env(FAST)  # only while training here: the session goes on with the default settings
        try:
            load_generated(N_CUSTOMERS, seed=4, labelled_share=0.5)
            _plant_bad_rows()
            tasks.run_nightly("ui-night-1")
            load_generated(200, seed=5, start_id=N_CUSTOMERS + 1, labelled_share=0.5)
            tasks.run_nightly("ui-night-2")
            tasks.start_run("ui-retrain", "segmentation_retrain")
            tasks.train("ui-retrain", trigger="manual")  # a candidate that the promotion tests promote
        finally:
            _restore(fast)
        yield url
    finally:
        from segmentation.ui import champion

        champion.clear()
        _restore(before)
        reset_url_cache()
        drop_database(url)


@pytest.fixture(scope="session")
def auth(airflow_db: None) -> object:
    """Airflow's SimpleAuthManager with users admin, viewer (read only) and editor (role user)."""
    _set_env(
        {
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        }
    )
    from airflow.api_fastapi.app import init_auth_manager

    return init_auth_manager()


def token_for(auth_manager: object, username: str, role: str | None) -> str:
    """A real Airflow JWT, as Airflow's login issues it (role None: a user the SimpleAuthManager grants nothing)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username=username, role=role))  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def tokens(auth: object) -> dict[str, str]:
    return {
        "admin": token_for(auth, "admin", "admin"),
        "viewer": token_for(auth, "viewer", "viewer"),
        "editor": token_for(auth, "editor", "user"),
        "no_role": token_for(auth, "outsider", None),  # authenticated, but may not read any DAG
    }


@pytest.fixture(scope="session")
def airflow_rest(auth: object, dagbag):
    """Airflow's own REST API app in this process, on the test metadata database, with the DAGs synced to it as
    a deployment has them; the Segmentation app calls it as it calls its api-server."""
    from airflow.api_fastapi.app import create_app
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from fastapi.testclient import TestClient

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)
    with TestClient(create_app(apps="core")) as client:

        def transport(method: str, path: str, token: str, *, json=None, params=None) -> tuple[int, object]:
            reply = client.request(method, path, json=json, params=params, headers={"Authorization": f"Bearer {token}"})
            try:
                return reply.status_code, reply.json()
            except ValueError:
                return reply.status_code, None

        yield transport


@pytest.fixture(scope="session")
def ui_app(auth: object, scored_db: str, airflow_rest):
    """The app mounted at /segmentation in a parent app, as Airflow's api-server mounts plugin apps."""
    from fastapi import FastAPI

    from segmentation.ui.app import create_app

    parent = FastAPI()
    parent.mount("/segmentation", create_app(airflow_transport=airflow_rest))
    return parent


@pytest.fixture
def client(ui_app):
    """An anonymous client."""
    from fastapi.testclient import TestClient

    with TestClient(ui_app, base_url="http://localhost:8080") as c:
        yield c


@pytest.fixture
def as_user(ui_app, tokens: dict[str, str]):
    """``as_user("admin")``: a client logged in with the Airflow UI's ``_token`` cookie of that user."""
    from fastapi.testclient import TestClient

    clients = []

    def make(name: str):
        c = TestClient(ui_app, base_url="http://localhost:8080")
        c.cookies.set("_token", tokens[name])
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
