"""Alerts of every kind are raised, stored in ``segmentation.alerts`` and logged (delivery: tests/dags)."""

from __future__ import annotations

import logging

import pytest

from segmentation import alerts, tasks
from segmentation.errors import ConfigError, RejectThresholdExceeded
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from tests.helpers import current_settings, db_url, execute, load_generated, query

pytestmark = pytest.mark.db


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")


def _alerts(kind: str) -> list[tuple]:
    return query(
        "SELECT run_id, task_id, message, details, delivered, delivery FROM segmentation.alerts WHERE kind = %s",
        (kind,),
    )


def test_a_refused_batch_raises_an_alert_that_is_stored_without_a_connection(
    fresh_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = to_raw_text(generate_customers(40, seed=4)).assign(age="forty")
    load_customers(bad, run_id="bad-load", url=db_url())
    tasks.start_run("bad-night")
    caplog.set_level(logging.INFO, logger="segmentation.alerts")
    with pytest.raises(RejectThresholdExceeded):
        tasks.clean("bad-night")
    [(run_id, task_id, message, _, delivered, delivery)] = _alerts("batch_refused")
    assert (run_id, task_id) == ("bad-night", "clean")
    assert "40 of 40 rows" in message and "age_not_a_number" in message
    assert delivered is False and delivery.startswith("not sent")
    assert "ALERT batch_refused" in caplog.text


def test_drift_retrain_and_a_refused_challenger_raise_alerts(
    fresh_db: str, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_generated(1200, labelled_share=0.6)
    tasks.run_nightly("night-1")
    load_generated(600, seed=9, start_id=20_001, labelled_share=0.6)
    monkeypatch.setenv("SEGMENTATION_DRIFT_THRESHOLD", "0")  # any drift retrains
    monkeypatch.setenv("SEGMENTATION_PROMOTION_MARGIN", "1")  # and the gate refuses any challenger
    summary = tasks.run_nightly("night-2")
    assert summary["retrain"]["trigger"] == "drift" and summary["retrain"]["promoted"] is False
    [(run_id, task_id, message, *_)] = _alerts("drift_retrain")
    assert (run_id, task_id) == ("night-2", "retrain_if_due") and "input drift: PSI of" in message
    [(run_id, task_id, message, details, *_)] = _alerts("challenger_refused")
    assert (run_id, task_id) == ("night-2", "promote")
    assert f"model version {summary['retrain']['version']} was not promoted" in message
    assert details == {"version": summary["retrain"]["version"], "champion": 1}


def test_a_segment_share_that_moved_more_than_the_setting_raises_an_alert(
    fresh_db: str, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_DRIFT_THRESHOLD", "100")
    load_generated(1200, labelled_share=0.6)
    tasks.run_nightly("night-1")
    tasks.run_nightly("night-2")  # nothing changed: no alert
    assert _alerts("share_moved") == []
    # As if segment A's share had been 6 points higher in the last run (the default limit is 5 points).
    execute(
        """UPDATE segmentation.drift_metrics SET value = value + 0.06
           WHERE run_id = 'night-2' AND metric = 'segment_share' AND subject = 'A'"""
    )
    tasks.run_nightly("night-3")
    [(run_id, task_id, message, details, *_)] = _alerts("share_moved")
    assert (run_id, task_id) == ("night-3", "finalise")
    assert set(details) == {"A"} and details["A"]["since_run"] == "night-2"
    assert round(details["A"]["before"] - details["A"]["after"], 4) == 0.06
    assert "more than 5 points since run night-2" in message
    monkeypatch.setenv("SEGMENTATION_SHARE_ALERT", "7")  # a 6-point move under a 7-point limit: no alert
    execute(
        """UPDATE segmentation.drift_metrics SET value = value + 0.06
           WHERE run_id = 'night-3' AND metric = 'segment_share' AND subject = 'A'"""
    )
    tasks.run_nightly("night-4")
    assert len(_alerts("share_moved")) == 1


def test_an_unknown_alert_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="not allowed"):
        alerts.raise_alert("everything_is_fine", "no", url=db_url(), settings=current_settings())
