"""Segment transitions and the change feed, written by the pipeline's scoring on a real database."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from segmentation import tasks
from segmentation.db import connect
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from tests.helpers import db_url, execute, load_generated, query, scalar

pytestmark = pytest.mark.db

N_CUSTOMERS = 2000


@pytest.fixture
def first_night(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "hist_gradient_boosting,logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "700")
    load_generated(N_CUSTOMERS)
    return tasks.run_nightly("night-1")


def transitions(run_id: str) -> Counter:
    rows = query(
        "SELECT from_segment, to_segment, cause, customers FROM segmentation.segment_transitions WHERE run_id = %s",
        (run_id,),
    )
    return Counter({(f, t, c): n for f, t, c, n in rows})


def history(run_id: str) -> list[tuple]:
    return query(
        "SELECT customer_id, previous_segment, segment FROM segmentation.segment_history WHERE run_id = %s",
        (run_id,),
    )


def live() -> dict[int, tuple]:
    """Each scored customer's (segment, model_version, source_updated_at)."""
    rows = query("SELECT customer_id, segment, model_version, source_updated_at FROM segmentation.customer_segments")
    return {c: (s, v, t) for c, s, v, t in rows}


def expected_causes(run_id: str, before: dict[int, tuple], version: int) -> Counter:
    """The run's transitions recomputed customer by customer from its history and the live rows before it."""
    after = live()
    counts: Counter = Counter()
    for customer, previous, segment in history(run_id):
        if previous is None:
            cause = "new"
        else:
            _, old_version, old_stamp = before[customer]
            model, attributes = old_version != version, old_stamp != after[customer][2]
            cause = "both" if model and attributes else "model" if model else "attributes"
        counts[(previous, segment, cause)] += 1
    return counts


def assert_feed_mirrors_history() -> None:
    """Exactly one feed row per history row, with its values, in history order."""
    rows = query(
        """SELECT h.history_id, f.change_id, f.event, h.customer_id = f.customer_id, h.segment = f.segment,
                  h.previous_segment IS NOT DISTINCT FROM f.previous_segment, h.run_id = f.run_id,
                  h.model_version = f.model_version
           FROM segmentation.segment_history AS h
           LEFT JOIN segmentation.segment_feed AS f USING (history_id) ORDER BY h.history_id"""
    )
    assert all(r[1] is not None and all(r[3:]) for r in rows)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    assert scalar("SELECT count(*) FROM segmentation.segment_feed WHERE history_id IS NOT NULL") == len(rows)


def assert_transitions_sum_to_history() -> None:
    """Every run's transitions add up to its history rows (and a run with history has transitions)."""
    rows = query(
        """SELECT h.run_id, h.n, t.n FROM (SELECT run_id, count(*) AS n FROM segmentation.segment_history
                                            GROUP BY run_id) AS h
           FULL JOIN (SELECT run_id, sum(customers) AS n FROM segmentation.segment_transitions GROUP BY run_id) AS t
           USING (run_id)"""
    )
    assert rows and all(history_rows == counted for _, history_rows, counted in rows), rows


def change_attributes(ids: list[int], run_id: str) -> None:
    """New attributes for ``ids`` (another seed's rows under the same ids)."""
    other = to_raw_text(generate_customers(N_CUSTOMERS, labelled_share=0.5, seed=77))
    other = other[other["customer_id"].astype(int).isin(ids)]
    load_customers(other, run_id=run_id, url=db_url())


def test_first_scoring_is_new_and_every_history_row_has_its_feed_row(first_night: dict) -> None:
    counts = transitions("night-1")
    assert sum(counts.values()) == N_CUSTOMERS == len(history("night-1"))
    assert {(f, c) for f, _, c in counts} == {(None, "new")}
    assert counts == Counter({(None, s, "new"): n for s, n in query(
        "SELECT segment, count(*) FROM segmentation.segment_history WHERE run_id = 'night-1' GROUP BY segment"
    )})  # fmt: skip
    assert scalar("SELECT count(*) FROM segmentation.segment_feed WHERE event = 'entered'") == N_CUSTOMERS
    assert_feed_mirrors_history()


def test_an_increment_counts_attribute_changes_and_new_customers(first_night: dict) -> None:
    before = live()
    version = int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))
    change_attributes(list(range(1, 401)), "load-2")
    load_customers(to_raw_text(generate_customers(7, seed=9, start_id=50_001)), run_id="load-2", url=db_url())
    second = tasks.run_nightly("night-2")
    assert scalar("SELECT mode FROM segmentation.scoring_plans WHERE run_id = 'night-2'") == "increment"
    assert second["score"]["shards"] >= 1

    counts = transitions("night-2")
    assert counts == expected_causes("night-2", before, version)
    assert sum(counts.values()) == len(history("night-2")) > 7
    assert {c for _, _, c in counts} == {"new", "attributes"}
    assert sum(n for (_, _, c), n in counts.items() if c == "new") == 7
    assert_feed_mirrors_history()
    assert_transitions_sum_to_history()
    moved = scalar("SELECT count(*) FROM segmentation.segment_feed WHERE event = 'moved' AND run_id = 'night-2'")
    assert moved == sum(n for (_, _, c), n in counts.items() if c == "attributes")


def test_a_rescore_by_a_new_model_counts_model_and_both(first_night: dict) -> None:
    before = live()
    old = scalar("SELECT model_name FROM segmentation.model_versions WHERE status = 'champion'")
    other = "logistic_regression" if old != "logistic_regression" else "hist_gradient_boosting"
    version = tasks.train("retrain", trigger="manual", candidates=[other])["version"]
    tasks.promote_version("retrain", version, user="test", reason="a model of another family")
    change_attributes(list(range(1, 301)), "load-3")

    run = "night-3"
    tasks.start_run(run)
    tasks.clean(run)
    tasks.build_features(run)
    planned = tasks.plan_scoring(run)
    assert scalar("SELECT mode FROM segmentation.scoring_plans WHERE run_id = %s", (run,)) == "rebuild"
    for shard in planned:
        tasks.score_shard(run, shard["shard"], shard["model_version"])
    # Deleted after the shards read its features: the publish must not bring it back.
    execute("DELETE FROM segmentation.customers WHERE customer_id = 1500")
    tasks.publish_scoring(run)

    counts = transitions(run)
    assert counts == expected_causes(run, before, version)
    assert sum(counts.values()) == len(history(run)) > 0
    assert {c for _, _, c in counts} == {"model", "both"}
    assert_feed_mirrors_history()
    assert_transitions_sum_to_history()
    assert scalar("SELECT count(*) FROM segmentation.customer_segments WHERE customer_id = 1500") == 0
    assert [r[0] for r in history(run)].count(1500) == 0
    assert segment_counts_are_exact()


def segment_counts_are_exact() -> bool:
    kept = dict(query("SELECT segment, customers FROM segmentation.segment_counts WHERE customers <> 0"))
    return kept == dict(query("SELECT segment, count(*) FROM segmentation.customer_segments GROUP BY segment"))


def test_a_deleted_customer_exits_and_a_quarantined_one_does_not(
    first_night: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_REJECT_THRESHOLD", "1")  # the batch is only the two bad rows
    last = dict(query("SELECT customer_id, segment FROM segmentation.customer_segments WHERE customer_id <= 12"))
    bad = to_raw_text(generate_customers(N_CUSTOMERS, labelled_share=0.5, seed=1))
    bad = bad[bad["customer_id"].isin(["11", "12"])].assign(age="abc")
    load_customers(bad, run_id="bad", url=db_url())
    tasks.run_nightly("night-2")
    assert scalar("SELECT count(*) FROM segmentation.customer_rejects WHERE customer_id IN (11, 12)") == 2
    assert scalar("SELECT count(*) FROM segmentation.customer_segments WHERE customer_id IN (11, 12)") == 2
    assert scalar("SELECT count(*) FROM segmentation.segment_feed WHERE event = 'exited'") == 0
    history_rows = scalar("SELECT count(*) FROM segmentation.segment_history")

    execute("DELETE FROM segmentation.customers WHERE customer_id IN (3, 4, 5, 12)")
    exits = query(
        """SELECT customer_id, segment, previous_segment, history_id, run_id FROM segmentation.segment_feed
           WHERE event = 'exited' ORDER BY change_id"""
    )
    assert exits == [(c, None, last[c], None, None) for c in (3, 4, 5, 12)]
    for table in ("customer_segments", "customer_features", "clean_customers"):
        assert scalar(f"SELECT count(*) FROM segmentation.{table} WHERE customer_id IN (3, 4, 5, 12)") == 0, table
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == history_rows  # history is kept
    assert segment_counts_are_exact()
    execute("DELETE FROM segmentation.customers WHERE customer_id = 999999")  # nobody: no exit
    assert scalar("SELECT count(*) FROM segmentation.segment_feed WHERE event = 'exited'") == 4

    # The next runs, an increment and a full rescore, do not bring them back.
    tasks.run_nightly("night-3")
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("UPDATE segmentation.scoring_state SET live_model_version = NULL")  # a full rescore is owed
    tasks.run_nightly("night-4")
    assert scalar("SELECT mode FROM segmentation.scoring_plans WHERE run_id = 'night-4'") == "rebuild"
    assert scalar("SELECT count(*) FROM segmentation.customer_segments WHERE customer_id IN (3, 4, 5, 12)") == 0
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == N_CUSTOMERS - 4
    assert segment_counts_are_exact()
    assert_transitions_sum_to_history()


def insert_change(customer: int, pause: float) -> None:
    """One history row (and so one feed row) in a transaction that waits ``pause`` seconds before committing."""
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version,
               run_id) VALUES (%s, NULL, 'A', 1, 'concurrent')""",
            (customer,),
        )
        time.sleep(pause)


def test_change_ids_follow_commit_order_so_a_watermark_misses_nothing(fresh_db: str) -> None:
    # Writers commit after random pauses while a reader polls with a watermark, as a consumer does. Were ids
    # handed out outside the writers' common lock, a later id could commit first and the reader would skip the
    # earlier one for good.
    rng = random.Random(3)
    pauses = [[rng.uniform(0, 0.03) for _ in range(12)] for _ in range(4)]
    done = threading.Event()
    seen: list[int] = []

    def read() -> None:
        mark = 0
        while True:
            finished = done.is_set()
            new = [r[0] for r in query("SELECT change_id FROM segmentation.segment_feed WHERE change_id > %s "
                                       "ORDER BY change_id", (mark,))]  # fmt: skip
            seen.extend(new)
            mark = new[-1] if new else mark
            if finished:
                return
            time.sleep(0.002)

    def write(worker: int) -> None:
        for i, pause in enumerate(pauses[worker]):
            insert_change(worker * 100 + i, pause)

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert len(seen) == 48 and seen == sorted(set(seen))
    assert seen == [r[0] for r in query("SELECT change_id FROM segmentation.segment_feed ORDER BY change_id")]


def test_a_writer_holding_the_lock_keeps_later_ids_waiting(fresh_db: str) -> None:
    # A deletion (an exit) inside an open transaction holds SEGMENT_WRITE: a history insert waits for its commit.
    load_generated(20)
    execute(
        """INSERT INTO segmentation.customer_segments (customer_id, segment, p_a, p_b, p_c, p_d, model_version,
           source_updated_at, run_id) VALUES (7, 'C', 0, 0, 1, 0, 1, now(), 'r')"""
    )
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM segmentation.customers WHERE customer_id = 7")
        later = threading.Thread(target=insert_change, args=(8, 0.0))
        later.start()
        deadline = time.monotonic() + 10
        while not scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            assert time.monotonic() < deadline, "the history insert did not wait for the exit's lock"
            time.sleep(0.02)
        assert later.is_alive()
    later.join(10)
    events = query("SELECT event, customer_id FROM segmentation.segment_feed ORDER BY change_id")
    assert events == [("exited", 7), ("entered", 8)]


def test_a_customer_deleted_while_an_increment_shard_scores_it_stays_gone(first_night: dict) -> None:
    from segmentation import locks

    change_attributes([5, 6], "load-r")
    run = "night-r"
    tasks.start_run(run)
    tasks.clean(run)
    tasks.build_features(run)
    (planned,) = tasks.plan_scoring(run)
    errors: list[BaseException] = []

    def score() -> None:
        try:
            tasks.score_shard(run, planned["shard"], planned["model_version"])
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with connect(db_url()) as conn, conn.cursor() as cur:
        locks.xact_lock(cur, locks.SEGMENT_WRITE)  # the shard reads and predicts, then waits to write
        shard = threading.Thread(target=score)
        shard.start()
        deadline = time.monotonic() + 60
        while not scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            assert shard.is_alive() and time.monotonic() < deadline, errors
            time.sleep(0.05)
        cur.execute("DELETE FROM segmentation.customers WHERE customer_id = 5")
    shard.join(60)
    assert not errors and not shard.is_alive()
    assert query("SELECT customer_id, run_id FROM segmentation.customer_segments WHERE customer_id IN (5, 6)") == [
        (6, run)
    ]
    events = query("SELECT event FROM segmentation.segment_feed WHERE customer_id = 5 ORDER BY change_id")
    assert events == [("entered",), ("exited",)]
    assert segment_counts_are_exact()
    assert_transitions_sum_to_history()
