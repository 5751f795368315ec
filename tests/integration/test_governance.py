"""Model governance on a real database: the promotion gate both ways, forced promotion, rollback and drift."""

from __future__ import annotations

import pytest

from segmentation import registry, tasks
from segmentation.db import connect
from segmentation.errors import ModelError
from tests.helpers import db_url, load_generated, query, scalar

pytestmark = pytest.mark.db


@pytest.fixture
def trained_night(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """A database with customers, one nightly run done, and its champion's version."""
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_generated(2500, labelled_share=0.6)
    tasks.run_nightly("night-1")
    return int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))


def champion() -> int:
    return int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))


def test_gate_refuses_a_challenger_below_the_margin(trained_night: int, monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_PROMOTION_MARGIN", "0.2")
    challenger = tasks.train("retrain-1", trigger="manual")["version"]
    decision = tasks.evaluate_and_promote("retrain-1", challenger)
    assert decision["promoted"] is False and "margin +0.2000" in decision["reason"]
    assert champion() == trained_night
    status, notes = query("SELECT status, notes FROM segmentation.model_versions WHERE version = %s", (challenger,))[0]
    assert status == "rejected" and "gain" in notes


def test_gate_promotes_a_clear_win_beyond_the_noise(trained_night: int, monkeypatch) -> None:
    # A weak champion (naive Bayes on 100 rows, forced in), then a booster on every row: a clear win on the
    # same holdout customers, which the paired test must call significant.
    weak = tasks.train("weak", trigger="manual", candidates=["naive_bayes"], row_cap=100)["version"]
    assert tasks.evaluate_and_promote("weak", weak, force=True)["promoted"]
    challenger = tasks.train("retrain-2", trigger="manual", candidates=["hist_gradient_boosting"])["version"]
    decision = tasks.evaluate_and_promote("retrain-2", challenger)
    # The same holdout customers were scored by both models.
    assert decision["champion"]["version"] == weak
    assert decision["challenger"]["macro_f1"] > decision["champion"]["macro_f1"]
    assert decision["promoted"] is True and decision["forced"] is False, decision["reason"]
    assert "beyond the noise" in decision["reason"] and "paired bootstrap" in decision["reason"]
    assert champion() == challenger
    assert scalar("SELECT status FROM segmentation.model_versions WHERE version = %s", (weak,)) == "retired"


def test_gate_never_promotes_a_retrain_on_the_same_data(trained_night: int, monkeypatch) -> None:
    # The same data and settings give the same model: a tie, which must not promote (and so not rescore),
    # even with a margin of zero.
    monkeypatch.setenv("SEGMENTATION_PROMOTION_MARGIN", "0")
    challenger = tasks.train("retrain-same", trigger="manual")["version"]
    decision = tasks.evaluate_and_promote("retrain-same", challenger)
    assert decision["promoted"] is False, decision["reason"]
    assert "gain +0.0000" in decision["reason"] and "tie: never promoted without force" in decision["reason"]
    assert "p = 1.0000" in decision["reason"]
    assert champion() == trained_night
    status = scalar("SELECT status FROM segmentation.model_versions WHERE version = %s", (challenger,))
    assert status == "rejected"


def test_force_promotion_is_recorded_and_rollback_restores_the_old_champion(trained_night: int, monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_PROMOTION_MARGIN", "0.5")
    challenger = tasks.train("retrain-3", trigger="manual")["version"]
    decision = tasks.evaluate_and_promote("retrain-3", challenger, force=True)
    assert decision["promoted"] is True and decision["forced"] is True
    assert decision["reason"].startswith("force_promote overrode the gate")
    assert champion() == challenger
    assert scalar("SELECT notes FROM segmentation.model_versions WHERE version = %s", (challenger,)).startswith(
        "forced: "
    )
    # A new champion means a full rescore, spread over shards.
    rescored = tasks.score_all("rescore-1")
    assert rescored["rows"] == scalar("SELECT count(*) FROM segmentation.customer_features")

    with connect(db_url()) as conn, conn.cursor() as cur:
        registry.promote(cur, trained_night, reason="rollback", forced=True)
    assert champion() == trained_night
    assert scalar("SELECT count(*) FROM segmentation.model_versions WHERE status = 'champion'") == 1
    with connect(db_url()) as conn, conn.cursor() as cur, pytest.raises(ModelError, match="does not exist"):
        registry.promote(cur, 999, reason="typo")


def test_registry_records_fingerprint_code_version_and_trigger(trained_night: int) -> None:
    fingerprint, trigger, code, metrics, profiles = query(
        """SELECT data_fingerprint, trigger, code_version, metrics, profiles
           FROM segmentation.model_versions WHERE version = %s""",
        (trained_night,),
    )[0]
    assert fingerprint["rows"] == 1500 and set(fingerprint["label_shares"]) == set("ABCD")
    assert fingerprint["max_updated_at"] and "categorical" in fingerprint["distributions"]
    assert trigger == "schedule" and code
    assert len(metrics["confusion_matrix"]) == 4
    assert set(profiles) == set("ABCD") and profiles["A"]["description"].startswith("Segment A")


def test_input_drift_triggers_a_retrain(trained_night: int) -> None:
    assert tasks.retrain_if_due("night-2") == {"trained": False}
    psi = dict(
        query("SELECT subject, value FROM segmentation.drift_metrics WHERE run_id = 'night-2' AND metric = 'psi'")
    )
    assert set(psi) >= {"age", "profession"} and max(psi.values()) < 0.25

    with connect(db_url()) as conn, conn.cursor() as cur:  # the customer base shifts: everyone is now a lawyer
        cur.execute("UPDATE segmentation.customers SET profession = 'Lawyer', updated_at = now()")
    tasks.clean("night-3")
    tasks.build_features("night-3")
    result = tasks.retrain_if_due("night-3")
    assert result["trained"] is True and result["trigger"] == "drift"
    assert "PSI of profession" in result["reason"]
    assert scalar("SELECT trigger FROM segmentation.model_versions WHERE version = %s", (result["version"],)) == "drift"


def test_with_approval_required_the_first_model_is_promoted_and_later_ones_are_held(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_PROMOTION_APPROVAL", "required")
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_generated(1500, labelled_share=0.6)
    # The first model replaces nothing: the night scores with it.
    summary = tasks.run_nightly("approval-night-1")
    assert summary["retrain"]["promoted"] is True
    first = champion()
    # A later challenger that passes (here: forced past) the gate waits for a person.
    challenger = tasks.train("approval-retrain", trigger="manual")["version"]
    decision = tasks.evaluate_and_promote("approval-retrain", challenger, force=True)
    assert decision["awaiting_review"] is True and decision["promoted"] is False
    assert champion() == first
    assert scalar("SELECT status FROM segmentation.model_versions WHERE version = %s", (challenger,)) == "candidate"
    assert scalar("SELECT count(*) FROM segmentation.alerts WHERE kind = 'approval_pending'") == 1
