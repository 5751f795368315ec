"""Unit tests for segmentation.migrations without a database: the numbered files and the applied-file check."""

from __future__ import annotations

from pathlib import Path

import pytest

from segmentation.config import DEFAULT_SQL_DIR
from segmentation.errors import ConfigError, DatabaseError
from segmentation.migrations import ROLES_FILE, check_applied, file_sha256, migration_files


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def sql_dir(tmp_path: Path) -> Path:
    _write(tmp_path, "001_customers.sql", "CREATE TABLE a (id int);\n")
    _write(tmp_path, "002_scores.sql", "CREATE TABLE b (id int);\n")
    _write(tmp_path, "003_new.sql", "CREATE TABLE c (id int);\n")
    _write(tmp_path, "roles.sql", "-- not a migration\n")
    _write(tmp_path, "4_bad_name.sql", "-- not a migration either\n")
    return tmp_path


def _recorded(files: list[Path]) -> dict[str, tuple[str, str]]:
    """What schema_migrations holds after applying ``files`` (sha256 padded as char(64) may be)."""
    return {p.name[:3]: (p.name, file_sha256(p.read_text()) + " ") for p in files}


def test_migration_files_are_the_numbered_ones_in_order(sql_dir: Path) -> None:
    assert [p.name for p in migration_files(sql_dir)] == ["001_customers.sql", "002_scores.sql", "003_new.sql"]


def test_duplicate_numbers_and_a_missing_folder_are_refused(sql_dir: Path, tmp_path: Path) -> None:
    _write(sql_dir, "002_again.sql", "SELECT 1;\n")
    with pytest.raises(ConfigError, match=r"duplicate migration numbers \['002'\]"):
        migration_files(sql_dir)
    with pytest.raises(ConfigError, match="does not exist"):
        migration_files(tmp_path / "nowhere")


def test_unchanged_applied_files_pass(sql_dir: Path) -> None:
    files = migration_files(sql_dir)
    check_applied(_recorded(files), files)


def test_a_changed_applied_file_is_named(sql_dir: Path) -> None:
    files = migration_files(sql_dir)
    applied = _recorded(files[:2])
    (sql_dir / "002_scores.sql").write_text("CREATE TABLE b (id bigint);\n")
    with pytest.raises(DatabaseError, match=r"002_scores\.sql") as caught:
        check_applied(applied, files)
    assert "001_customers.sql" not in str(caught.value)
    assert "003_" in str(caught.value)  # tells where the change belongs: the next number


def test_files_not_yet_applied_are_ignored(sql_dir: Path) -> None:
    files = migration_files(sql_dir)
    applied = _recorded(files[:2])
    (sql_dir / "003_new.sql").write_text("CREATE TABLE c (id bigint);\n")  # not applied yet: may still change
    check_applied(applied, files)
    check_applied({}, files)


def test_every_sql_file_of_the_project_is_a_migration_or_the_roles() -> None:
    # A misnamed migration (say 5_new.sql) would be skipped silently by migration_files.
    migrations = {p.name for p in migration_files(DEFAULT_SQL_DIR)}
    assert migrations
    assert {p.name for p in DEFAULT_SQL_DIR.glob("*.sql")} - migrations == {ROLES_FILE}
