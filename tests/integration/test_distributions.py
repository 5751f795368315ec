"""The overview's segment distributions: recomputed after a full rescore, carried forward on quiet nights."""

from __future__ import annotations

import pytest

from segmentation import monitoring, tasks
from tests.helpers import execute, load_generated, query, scalar

pytestmark = pytest.mark.db

TOTAL = monitoring.TOTAL_ATTRIBUTE


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
