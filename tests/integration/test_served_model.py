"""The served model on a real database: refitted on every labelled row, gated on evaluation models that never
saw the compared customers, explained per customer, and the error paths of ``segmentation explain``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from segmentation import registry, tasks
from segmentation.cli import main
from segmentation.columns import CUSTOMER_ID, MODEL_INPUT_COLUMNS
from segmentation.db import connect
from segmentation.labelled import holdout_mask
from tests.helpers import db_url, execute, load_generated, model_key, scalar

pytestmark = pytest.mark.db


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_TUNE_CANDIDATES", "2")
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def labelled_frame() -> pd.DataFrame:
    with connect(db_url()) as conn, conn.cursor() as cur:
        return tasks.labelled_features(cur)


def load_version(version: int, *, evaluation: bool = False):
    with connect(db_url()) as conn, conn.cursor() as cur:
        return registry.load_model(cur, version, evaluation=evaluation, key=model_key())


def test_served_model_is_refitted_on_every_labelled_row_and_the_gate_compares_evaluation_models(
    fresh_db: str, quick: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_generated(1500, seed=5, labelled_share=0.6)
    tasks.clean("r1")
    tasks.build_features("r1")
    first = tasks.train("r1", trigger="manual")
    assert tasks.evaluate_and_promote("r1", first["version"])["promoted"]

    labelled = labelled_frame()
    is_holdout = holdout_mask(labelled[CUSTOMER_ID], 0.2)
    X, y = labelled.loc[:, list(MODEL_INPUT_COLUMNS)], labelled["segment"]
    served, evaluation = load_version(1), load_version(1, evaluation=True)
    # The served artifact saw every labelled row; the evaluation model every row but the stable holdout.
    assert served.named_steps["classifier"].n_features_in_ == evaluation.named_steps["classifier"].n_features_in_
    scaler = "features", "numeric", "scale"

    def seen(model) -> int:
        return model.named_steps[scaler[0]].named_transformers_[scaler[1]].named_steps[scaler[2]].n_samples_seen_

    assert seen(served) == len(labelled) and seen(evaluation) == int((~is_holdout).sum())
    by_hand_all = clone(evaluation).fit(X, y)
    by_hand_train = clone(evaluation).fit(X.loc[~is_holdout], y.loc[~is_holdout])
    np.testing.assert_allclose(served.predict_proba(X), by_hand_all.predict_proba(X))
    np.testing.assert_allclose(evaluation.predict_proba(X), by_hand_train.predict_proba(X))
    assert not np.allclose(served.predict_proba(X), evaluation.predict_proba(X))
    fingerprint = scalar("SELECT data_fingerprint FROM segmentation.model_versions WHERE version = 1")
    assert fingerprint["served_rows"] == len(labelled)
    rows = scalar("SELECT metrics->'rows' FROM segmentation.model_versions WHERE version = 1")
    assert f"{int(is_holdout.sum())} customers" in rows["holdout metrics"]
    assert f"on {len(labelled)} rows" in rows["served model"]

    # The gate: both sides are evaluation models, scored on the holdout that neither was fitted on.
    loaded: list[tuple[int, bool]] = []
    original = registry.load_model

    def spy(cur, version, cache_dir=None, *, evaluation=False, key=None):
        loaded.append((version, evaluation))
        return original(cur, version, cache_dir, evaluation=evaluation, key=key)

    second = tasks.train("r2", trigger="manual")
    monkeypatch.setattr(registry, "load_model", spy)
    decision = tasks.evaluate_and_promote("r2", second["version"])
    assert sorted(loaded) == [(1, True), (2, True)]
    assert decision["rows"].startswith(f"{int(is_holdout.sum())} stable-holdout customers")
    assert all(seen(load_version(v, evaluation=True)) == int((~is_holdout).sum()) for v in (1, 2))
    # The served model would look better on the holdout, because it was fitted on it.
    from segmentation.metrics import evaluate

    holdout = labelled.loc[is_holdout]
    assert decision["challenger"]["log_loss"] == pytest.approx(
        evaluate(load_version(2, evaluation=True), holdout)["log_loss"], abs=1e-4
    )
    assert evaluate(load_version(2), holdout)["log_loss"] < decision["challenger"]["log_loss"]


def test_explain_predict_and_report_show_reasons_and_descriptions(fresh_db: str, quick: None, capsys) -> None:
    load_generated(1500, seed=6, labelled_share=0.6)
    tasks.run_nightly("r1")
    customer = int(scalar("SELECT min(customer_id) FROM segmentation.customer_segments"))
    code, out, _ = run_cli(capsys, "explain", str(customer))
    assert code == 0
    explained = json.loads(out)
    stored = scalar("SELECT segment FROM segmentation.customer_segments WHERE customer_id = %s", (customer,))
    assert explained["customer_id"] == customer and explained["segment"] == stored
    assert explained["model_version"] == 1
    assert sum(explained["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert len(explained["reasons"]) == 5
    assert {"attribute", "value", "effect"} == set(explained["reasons"][0])
    effects = [r["effect"] for r in explained["reasons"]]
    assert effects == sorted(effects, reverse=True)
    profiles = scalar("SELECT profiles FROM segmentation.model_versions WHERE version = 1")
    assert explained["description"] == profiles[stored]["description"]

    code, out, _ = run_cli(
        capsys, "predict", "--gender", "Male", "--ever-married", "No", "--age", "22", "--graduated", "No",
        "--profession", "Healthcare", "--spending-score", "Low", "--family-size", "4",
    )  # fmt: skip
    assert code == 0
    predicted = json.loads(out)
    assert predicted["imputed"] == ["work_experience", "var_1"]
    assert len(predicted["reasons"]) == 5
    assert predicted["description"] == profiles[predicted["segment"]]["description"]

    code, out, _ = run_cli(capsys, "report")
    assert code == 0
    for segment, profile in profiles.items():
        assert f"  {segment}: {profile['description']}" in out


def assert_one_line_error(capsys, args: list[str], *words: str) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2, (out, err)
    message = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in message[0], message[0]


def test_explain_error_paths(fresh_db: str, quick: None, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_one_line_error(capsys, ["explain", "abc"], "positive whole number (1 to 9223372036854775807)")
    assert_one_line_error(capsys, ["explain", "-4"], "positive whole number")
    assert_one_line_error(capsys, ["explain", "99999999999999999999"], "whole number")
    load_generated(1200, seed=7, labelled_share=0.6)
    tasks.clean("r1")
    tasks.build_features("r1")
    assert_one_line_error(capsys, ["explain", "1"], "no champion")

    tasks.run_nightly("r2")
    assert_one_line_error(capsys, ["explain", "999999"], "999999", "unknown")
    # A quarantined customer: its latest row is invalid.
    execute("UPDATE segmentation.customers SET age = 'abc', updated_at = now() WHERE customer_id = 3")
    monkeypatch.setenv("SEGMENTATION_REJECT_THRESHOLD", "1.0")
    tasks.clean("r3")
    assert_one_line_error(capsys, ["explain", "3"], "customer 3", "quarantined", "age_not_a_number")
    # A customer loaded and cleaned but not scored yet.
    load_generated(5, seed=8, start_id=5000)
    tasks.clean("r4")
    tasks.build_features("r4")
    assert_one_line_error(capsys, ["explain", "5000"], "customer 5000", "not been scored")
    assert run_cli(capsys, "explain", "4")[0] == 0
    execute("DROP SCHEMA segmentation CASCADE")
    assert_one_line_error(capsys, ["explain", "4"], "no segmentation schema", "init-db")
