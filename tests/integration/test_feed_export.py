"""The CRM export's consumer protocol on a real database: every change in exactly one file, whatever kills it."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segmentation import feed, tasks
from segmentation.feed import parse_name
from tests.helpers import execute, query, scalar

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]


def add_changes(n: int, run_id: str, first_customer: int = 1) -> None:
    """``n`` history rows (first scorings); the trigger on segment_history writes their feed rows."""
    execute(
        """INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version, run_id)
           SELECT i, NULL, (ARRAY['A','B','C','D'])[1 + i %% 4], 1, %s FROM generate_series(%s, %s) AS i""",
        (run_id, first_customer, first_customer + n - 1),
    )


def files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


def exported_ids(directory: Path) -> list[int]:
    """Every change id in the export files, in file order, checked against the range each file's name gives."""
    ids = []
    for name in files(directory):
        first, last = parse_name(name)
        with open(directory / name, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        in_file = [int(r["change_id"]) for r in rows]
        assert all(first <= i <= last for i in in_file), name
        assert in_file == sorted(in_file)
        ids.extend(in_file)
    return ids


def all_ids() -> list[int]:
    return [r[0] for r in query("SELECT change_id FROM segmentation.segment_feed ORDER BY change_id")]


def watermark(consumer: str = "crm") -> int:
    """The consumer's watermark; 0 before its first committed export (the protocol's start)."""
    rows = query("SELECT last_change_id FROM segmentation.feed_consumers WHERE consumer = %s", (consumer,))
    return int(rows[0][0]) if rows else 0


@pytest.fixture
def export_dir(fresh_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "exports"
    monkeypatch.setenv("SEGMENTATION_EXPORT_DIR", str(directory))
    return directory


def test_an_export_writes_the_new_changes_once_and_a_rerun_writes_nothing(export_dir: Path) -> None:
    add_changes(40, "r1")
    first = tasks.crm_export()
    assert first["rows"] == 40
    assert first["file"] == feed.file_name(1, 40) == "segment_feed_000000000001-000000000040.csv"
    assert files(export_dir) == [first["file"]] and watermark() == 40
    with open(export_dir / first["file"], encoding="utf-8") as handle:
        header, row = handle.readline().strip(), next(csv.DictReader([handle.readline()], fieldnames=feed.FEED_COLUMNS))
    assert header == ",".join(feed.FEED_COLUMNS)
    assert (row["change_id"], row["customer_id"], row["event"], row["segment"], row["previous_segment"]) == (
        "1", "1", "entered", "B", ""
    )  # fmt: skip

    again = tasks.crm_export()
    assert again["rows"] == 0 and again["file"] is None and again["watermark"] == 40
    assert files(export_dir) == [first["file"]]

    add_changes(25, "r2", first_customer=1000)
    second = tasks.crm_export()
    assert second["file"] == feed.file_name(41, 65) and second["rows"] == 25
    assert exported_ids(export_dir) == all_ids() == list(range(1, 66))


def test_ids_of_rolled_back_writers_leave_gaps_that_file_ranges_still_cover(export_dir: Path) -> None:
    from segmentation.db import connect

    add_changes(5, "r1")
    with pytest.raises(RuntimeError), connect(os.environ["SEGMENTATION_DATABASE_URL"]) as conn:
        with conn.cursor() as cur:
            cur.execute(
                """INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version,
                   run_id) SELECT i, NULL, 'A', 1, 'lost' FROM generate_series(100, 109) AS i"""
            )
        raise RuntimeError("rolled back")
    add_changes(5, "r2", first_customer=200)
    result = tasks.crm_export()
    assert result["file"] == feed.file_name(1, 20) and result["rows"] == 10
    assert exported_ids(export_dir) == [*range(1, 6), *range(16, 21)] == all_ids()
    add_changes(1, "r3", first_customer=300)
    assert tasks.crm_export()["file"] == feed.file_name(21, 21)


def test_an_export_that_dies_after_the_rename_is_adopted_not_repeated(
    export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_changes(30, "r1")

    def die(*_args, **_kwargs) -> None:
        raise OSError("killed between the rename and the commit")

    with monkeypatch.context() as patch:
        patch.setattr(feed, "advance", die)
        with pytest.raises(OSError, match="killed between"):
            tasks.crm_export()
    assert files(export_dir) == [feed.file_name(1, 30)]
    assert watermark() == 0  # the transaction rolled back (the consumer row too: it is created at 0 again)

    add_changes(10, "r2", first_customer=500)
    retried = tasks.crm_export()
    assert retried["adopted"] == [feed.file_name(1, 30)]
    assert retried["file"] == feed.file_name(31, 40) and retried["rows"] == 10 and retried["watermark"] == 40
    assert exported_ids(export_dir) == all_ids() == list(range(1, 41))
    assert tasks.crm_export()["file"] is None and watermark() == 40


# The export in a child process that stops at ``where`` until it is killed: "advance" (after the rename and the
# watermark's UPDATE, before the commit) or "rename" (the temporary file fsynced, not yet renamed).
CHILD = """
import os, sys, time
from pathlib import Path
from segmentation import feed, tasks
where, marker = sys.argv[1], Path(sys.argv[2])
def stop():
    marker.write_text(str(os.getpid()))
    time.sleep(600)
if where == "advance":
    original = feed.advance
    def advance(*args):
        original(*args)
        stop()
    feed.advance = advance
else:
    os.replace = lambda *args: stop()
tasks.crm_export()
"""


IDLE_IN_TRANSACTION = """SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'"""


def export_killed_at(where: str, tmp_path: Path) -> None:
    marker = tmp_path / f"stopped-{where}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, where, str(marker)], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, f"the export exited with {child.returncode} before reaching {where}"
            assert time.monotonic() < deadline, f"the export never reached {where}"
            time.sleep(0.05)
        # Its transaction is open and holds the consumer's row: a second exporter waits for it.
        assert scalar(IDLE_IN_TRANSACTION) == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("where", ["advance", "rename"])
def test_an_export_process_killed_with_sigkill_loses_and_repeats_nothing(
    export_dir: Path, tmp_path: Path, where: str
) -> None:
    add_changes(50, "r1")
    assert tasks.crm_export()["watermark"] == 50
    add_changes(20, "r2", first_customer=100)
    export_killed_at(where, tmp_path)
    left = files(export_dir) + sorted(n for n in os.listdir(export_dir) if n.startswith("."))
    if where == "advance":
        assert feed.file_name(51, 70) in left
    else:
        assert any(n.startswith(".segment_feed_") and n.endswith(".tmp") for n in left)
    # PostgreSQL ends the killed backend's transaction; the next export then takes the consumer's row.
    deadline = time.monotonic() + 30
    while scalar(IDLE_IN_TRANSACTION):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert watermark() == 50

    add_changes(5, "r3", first_customer=300)
    retried = tasks.crm_export()
    assert retried["adopted"] == ([feed.file_name(51, 70)] if where == "advance" else [])
    assert retried["file"] == (feed.file_name(71, 75) if where == "advance" else feed.file_name(51, 75))
    assert not [n for n in os.listdir(export_dir) if n.startswith(".")]  # the temporary file is gone
    assert exported_ids(export_dir) == all_ids() == list(range(1, 76))


def test_consumers_have_their_own_watermarks(export_dir: Path, tmp_path: Path) -> None:
    from segmentation.db import connect

    add_changes(12, "r1")
    with connect(os.environ["SEGMENTATION_DATABASE_URL"]) as conn, conn.cursor() as cur:
        other = feed.export_changes(cur, "warehouse", tmp_path / "warehouse")
    assert other.rows == 12 and other.watermark == 12
    assert scalar("SELECT count(*) FROM segmentation.feed_consumers WHERE consumer = 'crm'") == 0
    assert tasks.crm_export()["rows"] == 12
    assert watermark("warehouse") == watermark("crm") == 12


@pytest.fixture
def logins(fresh_db: str):
    """Throw-away login users in the pipeline and analyst roles; dropped afterwards."""
    import uuid

    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    from segmentation.migrations import apply_roles
    from tests.conftest import admin_url

    apply_roles(fresh_db)
    suffix = uuid.uuid4().hex[:8]
    users = {"pipeline": f"seg_feed_pipe_{suffix}", "analyst": f"seg_feed_analyst_{suffix}"}
    admin = psycopg2.connect(admin_url())
    admin.autocommit = True
    with admin.cursor() as cur:
        for group, user in users.items():
            role = sql.Identifier(f"segmentation_{group}")
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(user), role))
    try:
        yield {g: make_url(fresh_db).set(username=u).render_as_string(hide_password=False) for g, u in users.items()}
    finally:
        with admin.cursor() as cur:
            for user in users.values():
                cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
        admin.close()


def test_the_pipeline_login_exports_and_the_analyst_reads_the_feed_but_nothing_raw(
    export_dir: Path, logins: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg2

    from segmentation.db import reset_url_cache

    add_changes(8, "r1")
    execute(
        """INSERT INTO segmentation.segment_transitions (run_id, from_segment, to_segment, cause, customers)
           VALUES ('r1', NULL, 'A', 'new', 8)"""
    )
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", logins["pipeline"])
    reset_url_cache()
    assert tasks.crm_export()["file"] == feed.file_name(1, 8)

    def run(statement: str) -> list:
        conn = psycopg2.connect(logins["analyst"])
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall()
        finally:
            conn.rollback()
            conn.close()

    assert len(run("SELECT * FROM segmentation.segment_feed")) == 8
    assert run("SELECT customers FROM segmentation.segment_transitions") == [(8,)]
    for statement in (
        "SELECT * FROM segmentation.feed_consumers",
        "SELECT * FROM segmentation.segment_history",
        "INSERT INTO segmentation.segment_feed (customer_id, segment, event) VALUES (1, 'A', 'entered')",
        "DELETE FROM segmentation.segment_transitions",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            run(statement)
