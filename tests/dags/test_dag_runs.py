"""End-to-end ``dag.test()`` runs of both DAGs on a fresh customer database.

``dag.test()`` does not raise when a task fails, so every run's state is asserted.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from segmentation.data import read_kaggle_csv
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from tests.conftest import NEW_CSV
from tests.helpers import db_url, query, scalar

pytestmark = [pytest.mark.airflow, pytest.mark.db]

N_CUSTOMERS = 3000
# (column overrides, expected reason) for the planted bad rows; each planted five times.
PLANTED = [
    ({"age": "abc"}, "age_not_a_number"),
    ({"age": "-5"}, "age_out_of_range"),
    ({"age": "300"}, "age_out_of_range"),
    ({"age": "20", "work_experience": "25"}, "work_experience_exceeds_age"),
    ({"family_size": "0"}, "family_size_out_of_range"),
    ({"family_size": "50"}, "family_size_out_of_range"),
    ({"profession": "Astronaut"}, "profession_not_allowed"),
    ({"var_1": "Cat_99"}, "var_1_not_allowed"),
    ({"gender": "x" * 10_000}, "gender_not_allowed"),
    ({"spending_score": "Huge"}, "spending_score_not_allowed"),
]
BAD_START = 900_001


@pytest.fixture
def small_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "hist_gradient_boosting,logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "1000")


def plant_bad_rows() -> dict[int, str]:
    template = to_raw_text(generate_customers(50, seed=5, start_id=BAD_START, labelled_share=0.0))
    expected = {}
    for i in range(50):
        overrides, reason = PLANTED[i % len(PLANTED)]
        for column, value in overrides.items():
            template.loc[i, column] = value
        expected[BAD_START + i] = reason
    load_customers(template, run_id="plant", url=db_url())
    return expected


def run(dagbag, dag_id: str, day: int, conf: dict | None = None):
    dag = dagbag.dags[dag_id]
    return dag.test(logical_date=datetime(2026, 11, day, 2, tzinfo=UTC), run_conf=conf)


def snapshot() -> dict[str, object]:
    return {
        "segments": query("SELECT * FROM segmentation.customer_segments ORDER BY customer_id"),
        "history": scalar("SELECT count(*) FROM segmentation.segment_history"),
        "rejects": scalar("SELECT count(*) FROM segmentation.customer_rejects"),
        "models": scalar("SELECT count(*) FROM segmentation.model_versions"),
    }


@pytest.fixture
def first_night(airflow_db, dagbag, fresh_db: str, small_and_fast: None) -> tuple[object, dict[int, str]]:
    """Customers with planted bad rows, and the first nightly run over them."""
    load_customers(
        to_raw_text(generate_customers(N_CUSTOMERS, labelled_share=0.5, seed=2)), run_id="seed", url=db_url()
    )
    planted = plant_bad_rows()
    return run(dagbag, "segmentation_nightly", 1), planted


def test_nightly_dag_end_to_end(dagbag, first_night) -> None:
    first, planted = first_night
    assert first.state == "success"
    scored = dict(query("SELECT customer_id, count(*) FROM segmentation.customer_segments GROUP BY customer_id"))
    assert set(scored) == set(range(1, N_CUSTOMERS + 1))
    assert set(scored.values()) == {1}
    rejects = query("SELECT customer_id, reasons FROM segmentation.customer_rejects ORDER BY customer_id")
    assert {cid: reasons for cid, reasons in rejects} == {cid: [reason] for cid, reason in planted.items()}
    assert scalar("SELECT status FROM segmentation.pipeline_runs WHERE run_id = %s", (first.run_id,)) == "success"
    steps = scalar("SELECT steps FROM segmentation.pipeline_runs WHERE run_id = %s", (first.run_id,))
    assert steps["clean"]["rejected"] == 50 and steps["plan"]["shards"] == 3
    assert sum(steps[f"score_shard_{i}"]["rows"] for i in range(3)) == N_CUSTOMERS

    before = snapshot()
    second = run(dagbag, "segmentation_nightly", 2)
    assert second.state == "success"
    assert snapshot() == before


@pytest.mark.realdata
def test_nightly_dag_rescores_exactly_a_new_real_batch(dagbag, first_night) -> None:
    if not NEW_CSV.exists():
        pytest.skip("../shared/data/customers_new.csv is not present on this machine")
    assert first_night[0].state == "success"
    stamps = dict(query("SELECT customer_id, updated_at FROM segmentation.customers"))
    load_customers(read_kaggle_csv(NEW_CSV), run_id="new-batch", url=db_url())
    changed = {
        c for c, ts in query("SELECT customer_id, updated_at FROM segmentation.customers") if stamps.get(c) != ts
    }
    later = run(dagbag, "segmentation_nightly", 3)
    assert later.state == "success"
    rescored = {
        r[0] for r in query("SELECT customer_id FROM segmentation.customer_segments WHERE run_id = %s", (later.run_id,))
    }
    assert rescored == changed
    assert len(rescored) == len(pd.read_csv(NEW_CSV, usecols=["ID"]))


def test_retrain_dag_gate_refuses_then_force_promotes(
    airflow_db, dagbag, fresh_db: str, small_and_fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_customers(to_raw_text(generate_customers(2000, labelled_share=0.6, seed=4)), run_id="seed", url=db_url())
    assert run(dagbag, "segmentation_nightly", 10).state == "success"
    first_champion = scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'")
    monkeypatch.setenv("SEGMENTATION_PROMOTION_MARGIN", "0.5")  # no challenger can gain 50 points

    conf = {"force_promote": False, "cv_folds": 2, "candidates": ["naive_bayes"], "row_cap": 0}
    refused = run(dagbag, "segmentation_retrain", 11, conf)
    assert refused.state == "success"  # a refused promotion is a successful run that says why
    status, notes = query("SELECT status, notes FROM segmentation.model_versions ORDER BY version DESC LIMIT 1")[0]
    assert status == "rejected" and "margin +0.5000" in notes
    assert scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'") == first_champion
    announce = refused.get_task_instance("announce_champion")
    assert announce.state == "skipped"

    forced = run(dagbag, "segmentation_retrain", 12, {**conf, "force_promote": True})
    assert forced.state == "success"
    champion, model_name, notes = query(
        "SELECT version, model_name, notes FROM segmentation.model_versions WHERE status = 'champion'"
    )[0]
    assert champion != first_champion and model_name == "naive_bayes"
    assert notes.startswith("forced: force_promote overrode the gate")
    assert scalar("SELECT status FROM segmentation.model_versions WHERE version = %s", (first_champion,)) == "retired"
    assert forced.get_task_instance("announce_champion").state == "success"
