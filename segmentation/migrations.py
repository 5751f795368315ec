"""Schema migrations (the numbered files in ``sql/``, each applied once and checked by sha256) and roles."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from segmentation import locks
from segmentation.config import DEFAULT_SQL_DIR
from segmentation.db import SCHEMA, connect
from segmentation.errors import ConfigError, DatabaseError

log = logging.getLogger(__name__)

MIGRATION_PATTERN = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
ROLES_FILE = "roles.sql"


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


def file_sha256(text: str) -> str:
    """The sha256 recorded for a migration's text."""
    return hashlib.sha256(text.encode()).hexdigest()


def check_applied(applied: dict[str, tuple[str, str]], files: list[Path]) -> None:
    """DatabaseError naming the file when an applied migration's file no longer has the recorded sha256.

    ``applied`` maps version to (recorded name, recorded sha256). An applied migration is never re-run, so a
    changed file would otherwise be skipped silently and the schema would differ from what the file says.
    """
    for path in files:
        version = path.name[:3]
        if version not in applied:
            continue
        name, recorded = applied[version]
        actual = file_sha256(path.read_text())
        if actual != recorded.strip():
            raise DatabaseError(
                f"migration {path.name} was applied as {name} with sha256 {recorded.strip()[:12]}…, but the file "
                f"now has sha256 {actual[:12]}…; applied migrations must not change: restore the file and put the "
                f"change in a new migration ({int(version) + 1:03d}_….sql)"
            )


def migrate(url: str, sql_dir: Path = DEFAULT_SQL_DIR) -> list[str]:
    """Apply every migration not yet recorded, in order, in one transaction (all or nothing).

    Fails before applying anything when an applied migration's file has changed since it was applied.
    """
    applied_now: list[str] = []
    files = migration_files(sql_dir)
    with connect(url) as conn, conn.cursor() as cur:
        locks.xact_lock(cur, locks.MIGRATION)
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        cur.execute(
            f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
                   version text PRIMARY KEY, name text NOT NULL, sha256 char(64) NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        cur.execute(f"SELECT version, name, sha256 FROM {SCHEMA}.schema_migrations")
        done = {version: (name, sha) for version, name, sha in cur.fetchall()}
        check_applied(done, files)
        for path in files:
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
                (version, path.name, file_sha256(text)),
            )
            applied_now.append(path.name)
            log.info("applied migration %s", path.name)
    return applied_now


def apply_roles(url: str, sql_dir: Path = DEFAULT_SQL_DIR) -> None:
    """Create the database roles and grant their privileges (``sql/roles.sql``, idempotent)."""
    with connect(url) as conn, conn.cursor() as cur:
        locks.xact_lock(cur, locks.MIGRATION)
        cur.execute((sql_dir / ROLES_FILE).read_text())
    log.info("applied %s", ROLES_FILE)


@dataclass(frozen=True)
class SchemaState:
    """What the customer database holds, enough to tell a user the next step.

    Each field is an EXISTS probe that stops at the first row it finds: the check runs before every CLI command,
    so on a ready database it costs the same at any table size.
    """

    customers: bool
    model_versions: bool
    # Only probed for ``check_schema(..., training=True)``: whether a labelled customer has a feature row, the
    # rows training reads. None when not probed.
    labelled_features: bool | None = None


@dataclass(frozen=True)
class LabelledCounts:
    """How far the labelled customers got: loaded, cleaned, with feature rows."""

    labelled: int
    labelled_clean: int
    labelled_features: int


def check_schema(url: str, sql_dir: Path = DEFAULT_SQL_DIR, *, training: bool = False) -> SchemaState:
    """DatabaseError naming ``segmentation init-db`` when the schema or a migration is missing; else its state.

    ``training`` also probes for labelled customers with feature rows (``labelled_features``).
    """
    files = migration_files(sql_dir)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT to_regclass('{SCHEMA}.schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            raise DatabaseError(
                "the customer database has no segmentation schema yet: run `segmentation init-db` first"
            )
        cur.execute(f"SELECT version FROM {SCHEMA}.schema_migrations")
        applied = {row[0] for row in cur.fetchall()}
        pending = [p.name for p in files if p.name[:3] not in applied]
        if pending:
            raise DatabaseError(f"migrations {pending} are not applied yet: run `segmentation init-db` first")
        labelled_features = (
            f"""EXISTS (SELECT 1 FROM {SCHEMA}.customer_labels JOIN {SCHEMA}.customer_features USING (customer_id))"""
            if training
            else "NULL::boolean"
        )
        cur.execute(
            f"""SELECT EXISTS (SELECT 1 FROM {SCHEMA}.customers), EXISTS (SELECT 1 FROM {SCHEMA}.model_versions),
                       {labelled_features}"""
        )
        customers, versions, labelled = cur.fetchone()
    return SchemaState(bool(customers), bool(versions), labelled)


def labelled_counts(url: str) -> LabelledCounts:
    """Labelled customers, and how many of them are clean and have feature rows.

    These counts read every label, so they grow with the table: only for wording the error when
    ``check_schema(..., training=True)`` found no labelled customer with a feature row.
    """
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            f"""SELECT (SELECT count(*) FROM {SCHEMA}.customer_labels),
                       (SELECT count(*) FROM {SCHEMA}.customer_labels
                        JOIN {SCHEMA}.clean_customers USING (customer_id)),
                       (SELECT count(*) FROM {SCHEMA}.customer_labels
                        JOIN {SCHEMA}.customer_features USING (customer_id))"""
        )
        labelled, labelled_clean, labelled_features = cur.fetchone()
    return LabelledCounts(int(labelled), int(labelled_clean), int(labelled_features))
