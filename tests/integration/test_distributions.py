"""The overview's segment distributions: recomputed after a full rescore, carried forward on quiet nights."""

from __future__ import annotations

import pytest

from segmentation import distributions, tasks
from segmentation.db import connect
from tests.helpers import db_url, execute, load_generated, query, scalar

pytestmark = pytest.mark.db

TOTAL = distributions.TOTAL_ATTRIBUTE


def _distributions(run_id: str) -> dict:
    return query(
        "SELECT steps->'finalise'->'distributions' FROM segmentation.pipeline_runs WHERE run_id = %s", (run_id,)
    )[0][0]


def _totals(run_id: str) -> dict[str, int]:
    rows = query(
        "SELECT segment, customers FROM segmentation.segment_distributions WHERE run_id = %s AND attribute = %s",
        (run_id, TOTAL),
    )
    return {segment: int(n) for segment, n in rows}


def _buckets(run_id: str) -> set[tuple]:
    rows = query(
        """SELECT segment, attribute, bucket, customers FROM segmentation.segment_distributions
           WHERE run_id = %s AND attribute <> %s""",
        (run_id, TOTAL),
    )
    return set(rows)


def _segment_sizes() -> dict[str, int]:
    return dict(query("SELECT segment, count(*)::int FROM segmentation.customer_segments GROUP BY segment"))


def test_a_quiet_night_carries_the_buckets_forward_and_a_busy_one_recomputes_them(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_DRIFT_THRESHOLD", "100")  # no drift retrain in between
    load_generated(2000, labelled_share=0.5)
    tasks.run_nightly("first")
    assert _distributions("first") == {"computed_in": "first", "scored_since": 0}  # a full rescore
    assert _totals("first") == _segment_sizes()

    # 20 changed customers (1 % of 2,000): the buckets come from the first run, the sizes are exact.
    execute("UPDATE segmentation.customers SET age = '77', updated_at = now() WHERE customer_id <= 20")
    tasks.run_nightly("quiet")
    assert _distributions("quiet") == {"computed_in": "first", "scored_since": 20}
    assert _buckets("quiet") == _buckets("first")
    assert _totals("quiet") == _segment_sizes()

    # 150 more (7.5 % in all since the buckets were computed, over the 5 % limit): recomputed by one scan.
    execute("UPDATE segmentation.customers SET age = '66', updated_at = now() WHERE customer_id BETWEEN 21 AND 170")
    tasks.run_nightly("busy")
    assert _distributions("busy") == {"computed_in": "busy", "scored_since": 0}
    assert _buckets("busy") != _buckets("first")
    ages = query(
        """SELECT sum(customers)::int FROM segmentation.segment_distributions
           WHERE run_id = 'busy' AND attribute = 'age'"""
    )[0][0]
    assert ages == scalar("SELECT count(*) FROM segmentation.customer_segments")
    assert _totals("busy") == _segment_sizes()


def _all_rows(run_id: str) -> set[tuple]:
    return set(
        query(
            """SELECT segment, attribute, bucket, customers FROM segmentation.segment_distributions
               WHERE run_id = %s""",
            (run_id,),
        )
    )


def _recomputed() -> set[tuple]:
    """The distributions of the live tables by one SQL scan, as a busy night computes them."""
    with connect(db_url()) as conn, conn.cursor() as cur:
        distributions.record_segment_distributions(cur, "recomputed")
    rows = _all_rows("recomputed")
    execute("DELETE FROM segmentation.segment_distributions WHERE run_id = 'recomputed'")
    return rows


def test_a_full_rescore_sums_its_shards_counts_to_what_one_scan_of_the_tables_gives(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_DRIFT_THRESHOLD", "100")
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "700")
    monkeypatch.setenv("SEGMENTATION_CHUNK_SIZE", "300")
    load_generated(2000, labelled_share=0.5)
    tasks.start_run("first")
    tasks.clean("first")
    # Every bucket edge and gap: ages on the bounds, experience just under and on them, family sizes that
    # round half to even (2.5 -> 2, 3.5 -> 4), the cap and above it.
    execute(
        """UPDATE segmentation.clean_customers SET
               age = CASE customer_id %% 9 WHEN 0 THEN NULL WHEN 1 THEN 25 WHEN 2 THEN 24 WHEN 3 THEN 65
                                         WHEN 4 THEN 64 ELSE age END,
               work_experience = CASE customer_id %% 7 WHEN 0 THEN NULL WHEN 1 THEN 0.999 WHEN 2 THEN 1
                                                     WHEN 3 THEN 9.5 WHEN 4 THEN 10 ELSE work_experience END,
               family_size = CASE customer_id %% 8 WHEN 0 THEN NULL WHEN 1 THEN 2.5 WHEN 2 THEN 3.5 WHEN 3 THEN 6
                                                 WHEN 4 THEN 9 ELSE family_size END,
               profession = CASE WHEN customer_id %% 10 = 0 THEN NULL ELSE profession END"""
    )
    tasks.build_features("first")
    tasks.retrain_if_due("first")
    assert tasks.score_all("first")["shards"] == 3  # and publishes, as the CLI does
    first = tasks.finalise("first")
    assert first["distributions"] == {"computed_in": "first", "scored_since": 0}
    assert _all_rows("first") == _recomputed()
    assert scalar("SELECT count(*) FROM segmentation.rebuild_distributions") == 0
    buckets = {(a, b) for _, a, b, _ in _all_rows("first")}
    assert {("age", "25-34"), ("age", "65+"), ("work_experience", "0"), ("family_size", "6+")} <= buckets
    assert ("family_size", "(missing)") in buckets and ("profession", "(missing)") in buckets

    # Five customers quarantined since, then a full rescore (as after a promotion): their live rows are carried
    # over without features, so every attribute of theirs is "(missing)".
    execute("UPDATE segmentation.customers SET age = 'unknown', updated_at = now() WHERE customer_id <= 5")
    execute("UPDATE segmentation.customers SET age = '50', updated_at = now() WHERE customer_id BETWEEN 6 AND 50")
    execute("UPDATE segmentation.scoring_state SET live_model_version = -1")
    tasks.run_nightly("second")
    carried = "SELECT steps->'publish'->'publish'->>'carried_over' FROM segmentation.pipeline_runs WHERE run_id = %s"
    assert query(carried, ("second",))[0][0] == "5"
    assert _all_rows("second") == _recomputed()
    assert _totals("second") == _segment_sizes()
