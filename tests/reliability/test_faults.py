"""Faults against real PostgreSQL: killed shards, dropped connections, stuck locks, overlapping and repeated
runs, schema drift. Each test states what was lost: it must be nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from segmentation import locks, tasks
from segmentation.db import connect, reset_url_cache
from segmentation.errors import DatabaseError, DataError
from tests.helpers import db_url, load_generated, query, scalar

pytestmark = pytest.mark.db

SEGMENT_COLUMNS = "customer_id, segment, p_a, p_b, p_c, p_d, model_version, source_updated_at"


@pytest.fixture
def scored_base(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """3,000 scored customers, the undisturbed result, and everything wiped for a re-score."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_CHUNK_SIZE", "200")
    load_generated(3000, labelled_share=0.5)
    tasks.run_nightly("undisturbed")
    expected = query(f"SELECT {SEGMENT_COLUMNS} FROM segmentation.customer_segments ORDER BY customer_id")
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE segmentation.customer_segments, segmentation.segment_history")
    version = int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))
    return {"expected": expected, "version": version, "url": fresh_db}


def _score_in_subprocess(run_id: str, version: int) -> subprocess.Popen:
    code = f"from segmentation import tasks; tasks.score_shard({run_id!r}, 0, {version})"
    return subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ), stderr=subprocess.PIPE)


def _wait_for_query(pattern: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"scorer ended before {pattern!r}: {proc.stderr.read().decode()[-2000:]}")
        rows = query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'segmentation' AND query LIKE %s "
            "AND pid <> pg_backend_pid()",
            (pattern,),
        )
        if rows[0][0]:
            return
        time.sleep(0.02)
    raise AssertionError(f"no backend ran {pattern!r} within {timeout} s")


def _assert_nothing_written(run_id: str) -> None:
    assert scalar("SELECT count(*) FROM segmentation.customer_segments WHERE run_id = %s", (run_id,)) == 0
    assert scalar("SELECT count(*) FROM segmentation.segment_history WHERE run_id = %s", (run_id,)) == 0


def _assert_equals_undisturbed(expected: list) -> None:
    got = query(f"SELECT {SEGMENT_COLUMNS} FROM segmentation.customer_segments ORDER BY customer_id")
    assert got == expected
    assert scalar("SELECT count(*) - count(DISTINCT customer_id) FROM segmentation.segment_history") == 0


def _hold_write_lock(url: str):
    """Hold the segment-write advisory lock, so an increment's scorer stops after its staging COPYs, before its
    history and upsert."""
    holder = psycopg2.connect(url)
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (locks.SEGMENT_WRITE,))
    return holder


def _rescore_and_change(changed: tuple[int, ...] = (10, 20, 30)) -> None:
    """Score everyone again (the fixture emptied the table), then change the age of ``changed`` upstream and
    bring the change through clean and features, so the next plan is an increment of those customers."""
    tasks.run_nightly("base")
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE segmentation.customers SET age = (CASE WHEN age::int >= 80 THEN age::int - 1
                                                         ELSE age::int + 1 END)::text, updated_at = now()
               WHERE customer_id = ANY(%s) AND age IS NOT NULL""",
            (list(changed),),
        )
    tasks.clean("change")
    tasks.build_features("change")


def _assert_increment_complete(run_id: str, changed: set[int]) -> None:
    rescored = {
        r[0] for r in query("SELECT customer_id FROM segmentation.customer_segments WHERE run_id = %s", (run_id,))
    }
    assert rescored == changed
    assert scalar("SELECT count(*) FROM segmentation.score_queue") == 0
    assert scalar("SELECT count(*) FROM segmentation.score_pending") == 0
    # Exactly one history row per customer and per real change; counts agree with the table.
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == 3000
    assert query("SELECT segment, customers FROM segmentation.segment_counts WHERE customers > 0 ORDER BY 1") == (
        query("SELECT segment, count(*) FROM segmentation.customer_segments GROUP BY 1 ORDER BY 1")
    )


def test_sigkill_of_an_increment_between_staging_copy_and_commit(scored_base: dict, monkeypatch) -> None:
    _rescore_and_change()
    history = scalar("SELECT count(*) FROM segmentation.segment_history")
    planned = tasks.plan_scoring("killed-1")
    assert len(planned) == 1 and scalar("SELECT count(*) FROM segmentation.score_queue") == 3
    holder = _hold_write_lock(scored_base["url"])
    proc = _score_in_subprocess("killed-1", scored_base["version"])
    _wait_for_query("SELECT pg_advisory_xact_lock%", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    holder.close()
    _assert_nothing_written("killed-1")
    assert scalar("SELECT count(*) FROM segmentation.score_queue WHERE run_id = 'killed-1'") == 3  # queue intact
    retried = tasks.score_shard("killed-1", 0, scored_base["version"])  # Airflow's retry
    tasks.finalise("killed-1")
    _assert_increment_complete("killed-1", {10, 20, 30})
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == history + retried["changed_segments"]


def test_a_dropped_connection_fails_the_shard_cleanly_and_the_retry_completes(scored_base: dict, monkeypatch) -> None:
    _rescore_and_change()
    tasks.plan_scoring("dropped")
    holder = _hold_write_lock(scored_base["url"])
    proc = _score_in_subprocess("dropped", scored_base["version"])
    _wait_for_query("SELECT pg_advisory_xact_lock%", proc)
    query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'segmentation' "
        "AND pid <> pg_backend_pid() AND datname = current_database()"
    )
    assert proc.wait(timeout=60) != 0  # the task fails (Airflow retries it)
    holder.close()
    _assert_nothing_written("dropped")
    tasks.score_shard("dropped", 0, scored_base["version"])
    tasks.finalise("dropped")
    _assert_increment_complete("dropped", {10, 20, 30})


def _rebuild_table() -> str:
    return str(scalar("SELECT rebuild_table FROM segmentation.scoring_state"))


def test_sigkill_during_the_copy_into_the_rebuild_table(scored_base: dict, monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "5000")  # one shard
    assert len(tasks.plan_scoring("killed-2")) == 1
    table = _rebuild_table()
    blocker = psycopg2.connect(scored_base["url"])
    with blocker.cursor() as cur:  # the shard's first COPY waits here, so the kill lands inside the write path
        cur.execute(f"LOCK TABLE segmentation_rebuild.{table} IN SHARE MODE")
    proc = _score_in_subprocess("killed-2", scored_base["version"])
    _wait_for_query("COPY segmentation_rebuild.%", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    blocker.rollback()
    blocker.close()
    assert scalar(f"SELECT count(*) FROM segmentation_rebuild.{table}") == 0
    assert scalar("SELECT count(*) FROM segmentation.rebuild_shards") == 0
    _assert_nothing_written("killed-2")
    tasks.score_shard("killed-2", 0, scored_base["version"])  # Airflow's retry
    tasks.score_shard("killed-2", 0, scored_base["version"])  # a second retry writes nothing twice
    tasks.finalise("killed-2")
    _assert_equals_undisturbed(scored_base["expected"])
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == 3000


def test_sigkill_during_the_swap_leaves_the_live_table_intact(scored_base: dict, monkeypatch) -> None:
    tasks.run_nightly("base")  # the live table holds the undisturbed scores again
    history = scalar("SELECT count(*) FROM segmentation.segment_history")
    partition = query("SELECT inhrelid::regclass::text FROM pg_inherits")
    with connect(db_url()) as conn, conn.cursor() as cur:  # as after a model change: the next plan rescores everyone
        cur.execute("UPDATE segmentation.scoring_state SET live_model_version = NULL")
    planned = tasks.plan_scoring("killed-3")
    for p in planned:
        tasks.score_shard("killed-3", p["shard"], p["model_version"])
    reader = psycopg2.connect(scored_base["url"])
    with reader.cursor() as cur:  # an analyst's open transaction: the swap waits for it
        cur.execute("SELECT count(*) FROM segmentation.current_segments")
    code = "from segmentation import tasks; tasks.finalise('killed-3')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ), stderr=subprocess.PIPE)
    _wait_for_query("%rebuild_swap%", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.rollback()
    reader.close()
    # The old partition and its rows are untouched; nothing was logged; the rescore is still owed.
    assert query("SELECT inhrelid::regclass::text FROM pg_inherits") == partition
    _assert_equals_undisturbed(scored_base["expected"])
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == history
    assert scalar("SELECT rebuild_run FROM segmentation.scoring_state") == "killed-3"
    figures = tasks.finalise("killed-3")  # the retry publishes
    assert figures["publish"]["published"] is True and figures["publish"]["changed_segments"] == 0
    assert query("SELECT inhrelid::regclass::text FROM pg_inherits") != partition
    _assert_equals_undisturbed(scored_base["expected"])
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == history  # no real change, no row
    assert scalar("SELECT count(*) FROM segmentation.customer_segments WHERE run_id = 'killed-3'") == 3000
    assert query("SELECT count(*) FROM segmentation.current_segments") == [(3000,)]  # the views follow the swap


def test_a_stuck_lock_times_out_instead_of_hanging(scored_base: dict, monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_LOCK_TIMEOUT_MS", "500")
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "5000")
    reset_url_cache()
    tasks.plan_scoring("stuck")
    tasks.score_shard("stuck", 0, scored_base["version"])
    blocker = psycopg2.connect(scored_base["url"])
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE segmentation.customer_segments IN ACCESS EXCLUSIVE MODE")
    started = time.monotonic()
    try:
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            tasks.finalise("stuck")
    finally:
        blocker.rollback()
        blocker.close()
    assert time.monotonic() - started < 30
    _assert_nothing_written("stuck")


def test_overlapping_runs_do_not_duplicate_anything(scored_base: dict, monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "800")
    errors: list[BaseException] = []

    def run(run_id: str) -> None:
        try:
            tasks.score_all(run_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"overlap-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    _assert_equals_undisturbed(scored_base["expected"])
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == 3000


def test_rerunning_and_backfilling_leave_the_tables_identical(scored_base: dict) -> None:
    tasks.run_nightly("day-1")
    before = (
        query(f"SELECT {SEGMENT_COLUMNS} FROM segmentation.customer_segments ORDER BY customer_id"),
        scalar("SELECT count(*) FROM segmentation.segment_history"),
        scalar("SELECT count(*) FROM segmentation.clean_customers"),
    )
    for run_id in ("day-1", "day-2", "day-3", "day-1"):  # a re-run of day 1 and a backfill over days 2-3
        tasks.run_nightly(run_id)
    after = (
        query(f"SELECT {SEGMENT_COLUMNS} FROM segmentation.customer_segments ORDER BY customer_id"),
        scalar("SELECT count(*) FROM segmentation.segment_history"),
        scalar("SELECT count(*) FROM segmentation.clean_customers"),
    )
    assert after == before


@pytest.mark.parametrize(
    "ddl",
    [
        "ALTER TABLE segmentation.customers RENAME COLUMN profession TO job",
        "ALTER TABLE segmentation.customers DROP COLUMN family_size",
    ],
)
def test_upstream_schema_drift_names_the_column(fresh_db: str, ddl: str) -> None:
    load_generated(50)
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(ddl)
    with pytest.raises(DataError, match=r"lacks columns \['(profession|family_size)'\]"):
        tasks.clean("drifted")
    assert scalar("SELECT count(*) FROM segmentation.clean_customers") == 0


def test_a_type_change_upstream_is_still_validated(fresh_db: str) -> None:
    load_generated(50)
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE segmentation.customers ALTER COLUMN age TYPE numeric USING age::numeric")
        cur.execute("UPDATE segmentation.customers SET age = 17.5, updated_at = now() WHERE customer_id = 3")
    figures = tasks.clean("retyped")
    assert figures["rejected"] == 1
    assert query("SELECT reasons FROM segmentation.customer_rejects") == [(["age_not_whole", "age_out_of_range"],)]


def test_an_unreachable_database_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", "postgresql://nobody:hunter2@127.0.0.1:1/none")
    reset_url_cache()
    with pytest.raises(DatabaseError, match="cannot connect to") as info:
        tasks.clean("offline")
    assert "hunter2" not in str(info.value)


def test_a_retrain_and_promotion_during_scoring_corrupt_nothing(scored_base: dict, monkeypatch) -> None:
    """Shards score with the version their plan pinned; the promotion is atomic; the next run rescores all."""
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "500")
    old = scored_base["version"]
    planned = tasks.plan_scoring("during")
    assert len(planned) == 6 and {p["model_version"] for p in planned} == {old}
    champion_counts: set[int] = set()
    stop = threading.Event()

    def watch() -> None:  # scoring must never see two champions or none
        with connect(db_url()) as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT count(*) FROM segmentation.model_versions WHERE status = 'champion'")
                champion_counts.add(cur.fetchone()[0])
                conn.commit()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for p in planned[:3]:
            tasks.score_shard("during", p["shard"], p["model_version"])
        # The manual retrain lands between shards, while the watcher polls the registry.
        version = tasks.train("retrain-during", trigger="manual")["version"]
        tasks.evaluate_and_promote("retrain-during", version, force=True)
        for p in planned[3:]:
            tasks.score_shard("during", p["shard"], p["model_version"])
    finally:
        stop.set()
        watcher.join(timeout=30)
    tasks.finalise("during")

    new = int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))
    assert new != old and champion_counts == {1}
    _assert_equals_undisturbed(scored_base["expected"])  # every row from the pinned old version, once
    rescored = tasks.score_all("after")
    assert rescored["rows"] == 3000
    assert query("SELECT DISTINCT model_version FROM segmentation.customer_segments") == [(new,)]
