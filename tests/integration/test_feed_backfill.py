"""Migration 015 on a database that already has segment history: the feed and the transitions it can know."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from segmentation.config import DEFAULT_SQL_DIR
from segmentation.db import connect
from segmentation.migrations import migrate
from tests.conftest import create_database, drop_database

pytestmark = pytest.mark.db

FEED_MIGRATION = "015_segment_feed_and_transitions.sql"


@pytest.fixture
def before_015(tmp_path: Path):
    """A database migrated up to the migration before 015, and the folder of those migrations."""
    sql_dir = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, sql_dir)
    for later in sorted(sql_dir.glob("*.sql")):
        if later.name != "roles.sql" and later.name >= FEED_MIGRATION:
            later.unlink()
    url = create_database("seg_feed_backfill")
    try:
        migrate(url, sql_dir)
        yield url
    finally:
        drop_database(url)


def rows(url: str, statement: str) -> list[tuple]:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchall()


def test_existing_history_gets_its_feed_and_only_known_transitions(before_015: str) -> None:
    url = before_015
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version, run_id)
               VALUES (1, NULL, 'A', 1, 'old-1'), (2, NULL, 'B', 1, 'old-1'), (3, NULL, 'B', 1, 'old-1'),
                      (1, 'A', 'C', 2, 'old-2'), (4, NULL, 'D', 2, 'old-2')"""
        )
    assert migrate(url)[0] == FEED_MIGRATION  # then the later ones

    feed = rows(
        url,
        """SELECT f.history_id, f.customer_id, f.segment, f.previous_segment, f.event, f.run_id,
                  f.changed_at = h.changed_at
           FROM segmentation.segment_feed AS f JOIN segmentation.segment_history AS h USING (history_id)
           ORDER BY f.change_id""",
    )
    assert [r[0] for r in feed] == [1, 2, 3, 4, 5]
    assert [r[1:6] for r in feed] == [
        (1, "A", None, "entered", "old-1"),
        (2, "B", None, "entered", "old-1"),
        (3, "B", None, "entered", "old-1"),
        (1, "C", "A", "moved", "old-2"),
        (4, "D", None, "entered", "old-2"),
    ]
    assert all(r[6] for r in feed)
    # old-2 moved a customer for a reason nobody recorded: no transitions rather than invented ones.
    assert sorted(rows(url, "SELECT run_id, from_segment, to_segment, cause, customers FROM "
                            "segmentation.segment_transitions")) == [
        ("old-1", None, "A", "new", 1), ("old-1", None, "B", "new", 2)
    ]  # fmt: skip

    # New history after the migration continues the feed, in order.
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version, run_id)
               VALUES (5, NULL, 'A', 2, 'new-1')"""
        )
    assert rows(url, "SELECT max(change_id), count(*) FROM segmentation.segment_feed") == [(6, 6)]
    assert migrate(url) == []
