"""The promotion gate inside ``segmentation_retrain`` runs (``dag.test()``): a retrain on the same data is a tie
and never promotes (no champion Asset event, so no rescore); a clear win is promoted and announced.

``dag.test()`` does not raise when a task fails, so every run's state is asserted.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segmentation import tasks
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from tests.helpers import db_url, query, scalar

pytestmark = [pytest.mark.airflow, pytest.mark.db]

CONF = {"force_promote": False, "cv_folds": 2, "row_cap": 0}


def retrain(dagbag, day: int, **conf):
    run = dagbag.dags["segmentation_retrain"].test(
        logical_date=datetime(2026, 10, day, 2, tzinfo=UTC), run_conf={**CONF, **conf}
    )
    assert run.state == "success"  # a refused promotion is a successful run that says why
    return run


def champion() -> int:
    return int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))


@pytest.fixture
def customers(airflow_db, fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_PROMOTION_MARGIN", "0")
    load_customers(to_raw_text(generate_customers(2500, labelled_share=0.6, seed=8)), run_id="seed", url=db_url())
    tasks.clean("prepare")
    tasks.build_features("prepare")


def test_a_retrain_on_the_same_data_is_a_tie_and_is_not_announced(dagbag, customers: None) -> None:
    first = retrain(dagbag, 1, candidates=["logistic_regression"])
    assert first.get_task_instance("announce_champion").state == "success"  # no champion yet: promoted
    before = champion()

    again = retrain(dagbag, 2, candidates=["logistic_regression"])
    status, notes = query("SELECT status, notes FROM segmentation.model_versions ORDER BY version DESC LIMIT 1")[0]
    assert status == "rejected"
    assert "gain +0.0000" in notes and "tie: never promoted without force" in notes and "p = 1.0000" in notes
    assert champion() == before
    assert again.get_task_instance("announce_champion").state == "skipped"
    alert = scalar("SELECT message FROM segmentation.alerts WHERE kind = 'challenger_refused' ORDER BY alert_id DESC")
    assert "paired bootstrap" in alert and "McNemar" in alert


def test_a_clear_win_is_promoted_and_announced(dagbag, customers: None) -> None:
    weak = retrain(dagbag, 3, candidates=["naive_bayes"], row_cap=100)
    assert weak.get_task_instance("announce_champion").state == "success"
    weak_version = champion()

    strong = retrain(dagbag, 4, candidates=["hist_gradient_boosting"])
    assert strong.get_task_instance("announce_champion").state == "success"
    version, notes = query("SELECT version, notes FROM segmentation.model_versions WHERE status = 'champion'")[0]
    assert version != weak_version
    assert "beyond the noise" in notes and "paired bootstrap" in notes
    assert scalar("SELECT status FROM segmentation.model_versions WHERE version = %s", (weak_version,)) == "retired"
