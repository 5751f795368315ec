"""Change capture: the steps take only queued changes, miss nothing changed while they run, and overlapping
writers (increments and the full-rescore swap) log each real change exactly once."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from segmentation import tasks
from segmentation.db import connect
from tests.helpers import db_url, load_generated, query, scalar

pytestmark = pytest.mark.db


@pytest.fixture
def scored(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """3,000 customers through one nightly run (a full rescore)."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "800")
    load_generated(3000, labelled_share=0.5)
    first = tasks.run_nightly("first")
    assert first["score"]["rows"] == 3000
    return fresh_db


def _age_change(ids: list[int]) -> None:
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE segmentation.customers SET age = (CASE WHEN age::int >= 80 THEN age::int - 7
                                                         ELSE age::int + 7 END)::text, updated_at = now()
               WHERE customer_id = ANY(%s)""",
            (ids,),
        )


def _with_age(n: int, step: int = 97) -> list[int]:
    ids = [r[0] for r in query("SELECT customer_id FROM segmentation.customers WHERE age IS NOT NULL ORDER BY 1")]
    return ids[::step][:n]


def _wait_until_blocked(what: str, sql: str, params: tuple, thread: threading.Thread, timeout: float = 60) -> int:
    """Poll, for at most ``timeout`` seconds while ``thread`` lives, until ``sql`` (``params``) finds the
    backend that ``what`` names waiting for a lock; its pid."""
    deadline = time.monotonic() + timeout
    while not (found := query(sql, params)):
        assert thread.is_alive(), f"{what}: its thread ended without waiting"
        assert time.monotonic() < deadline, f"{what}: not seen waiting within {timeout:.0f} s"
        time.sleep(0.02)
    return int(found[0][0])


def _queues() -> tuple[int, int, int]:
    return tuple(
        scalar(f"SELECT count(*) FROM segmentation.{q}") for q in ("clean_pending", "features_pending", "score_pending")
    )


def test_a_quiet_rerun_finds_nothing_and_each_step_takes_only_the_changed_rows(scored: str) -> None:
    assert _queues() == (0, 0, 0)
    quiet = tasks.run_nightly("quiet")
    assert quiet["clean"]["queued"] == 0 and quiet["clean"]["rows"] == 0
    assert quiet["features"]["queued"] == 0 and quiet["features"]["rows"] == 0
    assert quiet["score"] == {"shards": 0, "rows": 0}

    changed = _with_age(12)
    _age_change(changed)
    assert _queues() == (12, 0, 0)  # the trigger queued exactly the changed customers
    clean = tasks.clean("changes")
    assert (clean["queued"], clean["rows"], clean["clean"]) == (12, 12, 12)
    assert _queues() == (0, 12, 0)
    features = tasks.build_features("changes")
    assert (features["queued"], features["rows"]) == (12, 12)
    assert _queues() == (0, 0, 12)
    planned = tasks.plan_scoring("changes")
    assert scalar("SELECT steps->'plan'->>'mode' FROM segmentation.pipeline_runs WHERE run_id = 'changes'") == (
        "increment"
    )
    assert sorted(r[0] for r in query("SELECT customer_id FROM segmentation.score_queue")) == sorted(changed)
    for p in planned:
        tasks.score_shard("changes", p["shard"], p["model_version"])
    tasks.finalise("changes")
    assert {r[0] for r in query("SELECT customer_id FROM segmentation.customer_segments WHERE run_id = 'changes'")} == (
        set(changed)
    )
    assert _queues() == (0, 0, 0)
    assert scalar("SELECT count(*) FROM segmentation.score_queue") == 0


def test_a_row_changed_while_clean_runs_is_queued_again_and_never_missed(scored: str) -> None:
    target = _with_age(1)[0]
    _age_change([target])  # queued for clean
    old_age = int(scalar("SELECT age FROM segmentation.customers WHERE customer_id = %s", (target,)))
    # Hold clean after it has taken its queue and read the rows, before it writes clean_customers.
    blocker = psycopg2.connect(scored)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE segmentation.clean_customers IN SHARE MODE")
    results: dict[str, object] = {}
    cleaner = threading.Thread(target=lambda: results.update(first=tasks.clean("during")))
    cleaner.start()
    cleaner_pid = _wait_until_blocked(
        "clean at its write, behind the blocker's lock",
        """SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND query LIKE '%%INSERT INTO segmentation.clean_customers%%' AND %s = ANY(pg_blocking_pids(pid))""",
        (blocker.get_backend_pid(),),
        cleaner,
    )
    # The upstream row changes again while clean holds its taken queue: the trigger's insert into
    # clean_pending waits for clean's transaction, which deleted the id from the queue.
    writer = threading.Thread(target=_age_change, args=([target],))
    writer.start()
    _wait_until_blocked(
        "the second change, behind clean's transaction",
        """SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND query LIKE '%%UPDATE segmentation.customers SET age%%' AND %s = ANY(pg_blocking_pids(pid))""",
        (cleaner_pid,),
        writer,
    )
    # Observed order so far: clean has taken its queue and read the row; the change is not committed.
    assert cleaner.is_alive() and "first" not in results
    assert int(scalar("SELECT age FROM segmentation.customers WHERE customer_id = %s", (target,))) == old_age
    blocker.rollback()
    blocker.close()
    cleaner.join(timeout=60)
    writer.join(timeout=60)
    assert not cleaner.is_alive() and not writer.is_alive(), "clean or the writer never finished"
    new_age = int(scalar("SELECT age FROM segmentation.customers WHERE customer_id = %s", (target,)))
    assert new_age != old_age
    assert results["first"]["rows"] == 1
    # clean saw the version before the second change; that change is queued again, not lost.
    assert scalar("SELECT age FROM segmentation.clean_customers WHERE customer_id = %s", (target,)) == old_age
    assert query("SELECT customer_id FROM segmentation.clean_pending") == [(target,)]
    second = tasks.run_nightly("after")
    assert second["clean"]["rows"] == 1 and second["score"]["rows"] == 1
    assert scalar("SELECT age FROM segmentation.customer_features WHERE customer_id = %s", (target,)) == new_age
    assert _queues() == (0, 0, 0)


def test_overlapping_increments_and_a_rebuild_log_each_change_once(scored: str) -> None:
    changed = _with_age(300, step=7)
    _age_change(changed)
    tasks.clean("prep")
    tasks.build_features("prep")
    history_before = scalar("SELECT count(*) FROM segmentation.segment_history")
    errors: list[BaseException] = []

    def run(run_id: str) -> None:
        try:
            tasks.score_all(run_id)
            tasks.finalise(run_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"inc-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    # Each changed customer was scored by exactly one of the two runs.
    assert scalar("SELECT count(*) FROM segmentation.customer_segments WHERE run_id IN ('inc-0', 'inc-1')") == len(
        changed
    )

    # Now a full rescore (as after a model change) overlapping another increment of new changes.
    more = _with_age(200, step=11)
    _age_change(more)
    tasks.clean("prep-2")
    tasks.build_features("prep-2")
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("UPDATE segmentation.scoring_state SET live_model_version = NULL")
    threads = [threading.Thread(target=run, args=(f"over-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []

    # History: never two rows for one customer in one run, every row a real change, and the chain of each
    # customer's changes ends at their live segment.
    assert not query(
        """SELECT customer_id, run_id FROM segmentation.segment_history GROUP BY 1, 2 HAVING count(*) > 1"""
    )
    assert scalar("SELECT count(*) FROM segmentation.segment_history WHERE previous_segment = segment") == 0
    assert not query(
        """SELECT s.customer_id FROM segmentation.customer_segments AS s
           JOIN LATERAL (SELECT segment FROM segmentation.segment_history AS h WHERE h.customer_id = s.customer_id
                         ORDER BY history_id DESC LIMIT 1) AS last ON true
           WHERE last.segment <> s.segment"""
    )
    assert not query(
        """SELECT customer_id FROM segmentation.segment_history AS h
           WHERE previous_segment IS DISTINCT FROM (
               SELECT segment FROM segmentation.segment_history AS p
               WHERE p.customer_id = h.customer_id AND p.history_id < h.history_id
               ORDER BY history_id DESC LIMIT 1)"""
    )
    assert scalar("SELECT count(*) FROM segmentation.segment_history") >= history_before
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == 3000
    assert query("SELECT segment, customers FROM segmentation.segment_counts WHERE customers > 0 ORDER BY 1") == (
        query("SELECT segment, count(*) FROM segmentation.customer_segments GROUP BY 1 ORDER BY 1")
    )
    assert scalar("SELECT rebuild_run FROM segmentation.scoring_state") is None
    assert _queues() == (0, 0, 0)
    # Every customer carries the newest features' timestamp: nothing changed was left unscored.
    assert not query(
        """SELECT f.customer_id FROM segmentation.customer_features AS f
           JOIN segmentation.customer_segments AS s USING (customer_id)
           WHERE s.source_updated_at <> f.source_updated_at"""
    )
