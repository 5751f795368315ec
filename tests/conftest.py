"""Shared fixtures: a real PostgreSQL server and a fresh database per test.

The server is the one named by ``SEGMENTATION_TEST_ADMIN_URL`` (an admin URL, e.g.
``postgresql://root@127.0.0.1:5432/postgres`` in CI), else an embedded server started in a
temporary folder. Every database a test creates is dropped afterwards (``tests.scratch``, which the
benchmarks use too).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import scratch

# Airflow's test environment (throw-away home, metadata database) as session fixtures, defined once for the
# DAG, UI and alert tests alike.
pytest_plugins = ["tests.airflow_setup"]

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN_CSV = SHARED_DATA / "customers_train.csv"
NEW_CSV = SHARED_DATA / "customers_new.csv"
ADMIN_ENV = "SEGMENTATION_TEST_ADMIN_URL"
# Test databases are named by URL, so no local demo key is generated: every test process (and the Airflow
# processes they start) signs and verifies model artifacts with this throw-away key.
os.environ.setdefault("SEGMENTATION_MODEL_SIGNING_KEY", "test-only-model-signing-key-0123456789")

_server_holder: dict[str, object] = {}


def admin_url() -> str:
    """Admin URL of the test server, starting the embedded one on first use."""
    named = os.environ.get(ADMIN_ENV)
    if named:
        from segmentation.db import require_local

        return require_local(named, ADMIN_ENV)
    if "url" not in _server_holder:
        server = scratch.start_embedded_server(Path(tempfile.mkdtemp(prefix="segmentation-test-pg-")))
        _server_holder.update(server=server, url=server.get_uri())
    return str(_server_holder["url"])


def database_url(admin: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin``."""
    return scratch.database_url(admin, name)


def create_database(prefix: str = "seg_test") -> str:
    """Create a uniquely named database on the test server; returns its URL."""
    return scratch.create_database(admin_url(), prefix)


def drop_database(url: str) -> None:
    """Drop the database of ``url``, disconnecting anyone still in it."""
    scratch.drop_database(admin_url(), url)


@pytest.fixture
def fresh_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A new migrated database named by SEGMENTATION_DATABASE_URL for this test, dropped afterwards."""
    from segmentation.db import reset_url_cache
    from segmentation.migrations import migrate

    url = create_database()
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", url)
    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEGMENTATION_MODELS_DIR", str(tmp_path / "models"))
    reset_url_cache()
    migrate(url)
    try:
        yield url
    finally:
        drop_database(url)


# Folders whose every test is slow (Airflow, the browser, Celery, the fault drills): make check leaves them out.
SLOW_FOLDERS = ("dags", "distributed", "reliability", "ui")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of SLOW_FOLDERS ``slow``, so that ``pytest -m "not slow"`` is the fast loop."""
    tests_root = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(tests_root).parts
        if parts and parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    server = _server_holder.get("server")
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]
