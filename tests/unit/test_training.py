"""Unit tests for segmentation.training: TrainingOptions and train_model, the recipe that splits, compares,
chooses, tunes and evaluates (each step has its own test module: test_selection, test_metrics, ...)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from segmentation.candidates import PARAM_GRIDS, build_candidate
from segmentation.columns import KAGGLE_COLUMNS, MODEL_INPUT_COLUMNS, SEGMENTS
from segmentation.errors import DataError, ModelError
from segmentation.features import derive_features
from segmentation.metrics import evaluate
from segmentation.selection import TunedModel, TuningOptions
from segmentation.training import TrainingOptions, TrainingResult, train_model
from tests.helpers import REAL_TRAIN_CSV, make_labelled, require_file

FAST = ["hist_gradient_boosting"]
FAST_TUNING = TuningOptions(n_candidates=2, min_resources=400)  # keeps the unit tests quick


def options(**overrides) -> TrainingOptions:
    """Quick options: naive Bayes, two folds, a small search; ``overrides`` replace any of them."""
    return TrainingOptions(**{"candidates": ["naive_bayes"], "cv_folds": 2, "tuning": FAST_TUNING, **overrides})


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    return make_labelled(2000, seed=7)


@pytest.fixture(scope="module")
def result(labelled: pd.DataFrame) -> TrainingResult:
    return train_model(labelled, options(candidates=FAST, random_state=3))


def test_train_model_result(result: TrainingResult, labelled: pd.DataFrame) -> None:
    assert result.model_name == "hist_gradient_boosting"
    assert result.n_train + result.n_holdout == len(labelled)
    assert result.n_holdout == 400
    metrics = result.metrics
    assert 0.5 < metrics["accuracy"] <= 1.0  # chance is 0.25
    assert 0.5 < metrics["macro_f1"] <= 1.0
    assert 0.0 < metrics["log_loss"] < np.log(4)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (4, 4)
    assert matrix.sum() == result.n_holdout
    assert metrics["confusion_labels"] == list(SEGMENTS)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["accuracy"])
    assert set(metrics["per_class_f1"]) == set(SEGMENTS)
    assert all(0.0 <= v <= 1.0 for v in metrics["per_class_f1"].values())
    assert set(result.params) == set(PARAM_GRIDS["hist_gradient_boosting"])
    assert 0.0 < metrics["brier"] < 0.75  # 0.75 is the uniform 1/4 forecast
    assert set(metrics["ece_per_class"]) == set(SEGMENTS)
    assert 0.0 <= metrics["ece_mean"] < 0.1
    assert metrics["cv_scoring"] == "neg_log_loss" and metrics["cv_score"] < 0
    assert [row["name"] for row in result.comparison] == FAST
    assert sum(result.label_shares.values()) == pytest.approx(1.0)
    json.dumps([result.params, result.metrics, result.comparison, result.label_shares])  # JSON-safe


def _rows_seen(pipeline) -> int:
    return pipeline.named_steps["features"].named_transformers_["numeric"].named_steps["scale"].n_samples_seen_


def test_evaluation_pipeline_is_fitted_on_train_split_only(result: TrainingResult, labelled: pd.DataFrame) -> None:
    for key, value in result.params.items():
        assert result.pipeline.get_params()[key] == value
        assert result.eval_pipeline.get_params()[key] == value
    one_hot = train_model(labelled, options(random_state=3))
    assert _rows_seen(one_hot.eval_pipeline) == one_hot.n_train


def test_served_pipeline_is_refitted_on_every_labelled_row(labelled: pd.DataFrame) -> None:
    train, holdout = labelled.iloc[:1600], labelled.iloc[1600:]
    opts = options(candidates=["logistic_regression"], random_state=0)
    result = train_model(train, opts, holdout=holdout)
    assert result.n_served == len(labelled) == _rows_seen(result.pipeline)
    assert _rows_seen(result.eval_pipeline) == len(train)
    X = derive_features(labelled).loc[:, list(MODEL_INPUT_COLUMNS)]
    by_hand = clone(result.eval_pipeline).fit(X, labelled["segment"])
    np.testing.assert_allclose(result.pipeline.predict_proba(X), by_hand.predict_proba(X))
    assert not np.allclose(result.pipeline.predict_proba(X), result.eval_pipeline.predict_proba(X))
    # The holdout metrics are the evaluation model's, not the served model's.
    assert evaluate(result.eval_pipeline, holdout)["log_loss"] == pytest.approx(result.metrics["log_loss"])
    assert evaluate(result.pipeline, holdout)["log_loss"] != pytest.approx(result.metrics["log_loss"])


def test_refit_keeps_the_row_cap_and_can_be_switched_off(labelled: pd.DataFrame) -> None:
    train, holdout = labelled.iloc[:1600], labelled.iloc[1600:]
    capped = train_model(train, options(row_cap=1000, random_state=0), holdout=holdout)
    assert capped.n_served == 1000 == _rows_seen(capped.pipeline)
    kept = train_model(train, options(refit=False, random_state=0), holdout=holdout)
    assert kept.pipeline is kept.eval_pipeline and kept.n_served == kept.n_train == len(train)


def test_trained_hist_gradient_boosting_keeps_native_categories(result: TrainingResult) -> None:
    classifier = result.pipeline.named_steps["classifier"]
    assert classifier.is_categorical_.sum() == 6  # the six categorical columns, numeric ones are not


def test_train_model_pipeline_scores_new_customers(result: TrainingResult) -> None:
    fresh = make_labelled(300, seed=99)
    proba = result.pipeline.predict_proba(derive_features(fresh.drop(columns="segment")))
    assert proba.shape == (300, 4)
    assert list(result.pipeline.classes_) == list(SEGMENTS)
    assert (result.pipeline.classes_[proba.argmax(axis=1)] == fresh["segment"]).mean() > 0.5


def test_train_model_is_deterministic(result: TrainingResult, labelled: pd.DataFrame) -> None:
    again = train_model(labelled, options(candidates=FAST, random_state=3))

    def untimed(metrics: dict) -> dict:
        return {k: v for k, v in metrics.items() if k != "predict_rows_per_s"}

    assert untimed(again.metrics) == untimed(result.metrics)
    assert again.params == result.params
    assert again.label_shares == result.label_shares

    def strip(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k not in ("fit_seconds", "predict_seconds")} for row in rows]

    assert strip(again.comparison) == strip(result.comparison)
    fresh = derive_features(make_labelled(50, seed=5))
    np.testing.assert_array_equal(again.pipeline.predict_proba(fresh), result.pipeline.predict_proba(fresh))


def test_train_model_hands_its_options_to_each_step(monkeypatch: pytest.MonkeyPatch, labelled: pd.DataFrame) -> None:
    import segmentation.training as training

    calls: dict[str, dict] = {}

    def compare(X, y, names, **kwargs):
        calls["compare"] = {"names": names, **kwargs}
        return pd.DataFrame({"name": names, "model_bytes": [1], "within_noise": [True]})

    def tune_or_keep_defaults(name, X, y, **kwargs):
        calls["tune"] = {"name": name, "rows": len(X), **kwargs}
        pipeline = build_candidate(name, 0).set_params(classifier__var_smoothing=0.1).fit(X, y)
        params = {"classifier__var_smoothing": 0.1}
        return TunedModel(pipeline, params, tuned_over_defaults=True, cv_score=-1.25, cv_scoring="f1_macro")

    monkeypatch.setattr(training, "compare_candidates", compare)
    monkeypatch.setattr(training, "tune_or_keep_defaults", tune_or_keep_defaults)
    monkeypatch.setattr(training, "predict_rows_per_second", lambda pipeline, X: 1234.5)
    tuning = TuningOptions(n_candidates=5, scoring="f1_macro")
    trained = train_model(
        labelled.head(600), options(cv_folds=3, random_state=9, n_jobs=2, compare_row_cap=300, tuning=tuning)
    )
    assert calls["compare"] == {"names": ["naive_bayes"], "row_cap": 300, "cv_folds": 3, "random_state": 9, "n_jobs": 2}
    assert calls["tune"] == {
        "name": "naive_bayes",
        "rows": trained.n_train,
        "options": tuning,
        "check_row_cap": 300,
        "cv_folds": 3,
        "random_state": 9,
        "n_jobs": 2,
    }
    assert trained.params == {"classifier__var_smoothing": 0.1}
    assert trained.metrics["tuned_over_defaults"] is True
    assert (trained.metrics["cv_score"], trained.metrics["cv_scoring"]) == (-1.25, "f1_macro")
    assert trained.metrics["predict_rows_per_s"] == 1234.5
    assert trained.comparison == [{"name": "naive_bayes", "model_bytes": 1, "within_noise": True}]


def test_train_model_does_not_mutate_input(labelled: pd.DataFrame) -> None:
    small = labelled.head(400).copy()
    before = small.copy()
    train_model(small, options(random_state=0))
    pd.testing.assert_frame_equal(small, before)


def test_train_model_row_cap(labelled: pd.DataFrame) -> None:
    capped = train_model(labelled, options(row_cap=500, random_state=0))
    assert capped.n_train + capped.n_holdout == 500
    full_shares = labelled["segment"].value_counts(normalize=True)
    for segment, share in capped.label_shares.items():
        assert share == pytest.approx(full_shares[segment], abs=0.01)  # stratified


def test_train_model_keeps_rows_with_gaps() -> None:
    frame = make_labelled(400, seed=8)
    frame.loc[frame.index[:100], ["profession", "work_experience", "ever_married"]] = None
    fitted = train_model(frame, options(random_state=0))
    assert fitted.n_train + fitted.n_holdout == 400


def test_train_model_with_a_given_holdout_evaluates_exactly_it(labelled: pd.DataFrame) -> None:
    train, holdout = labelled.iloc[:1600], labelled.iloc[1600:]
    result = train_model(train, options(candidates=["logistic_regression"], random_state=0), holdout=holdout)
    assert (result.n_train, result.n_holdout) == (len(train), len(holdout))
    assert sum(map(sum, result.metrics["confusion_matrix"])) == len(holdout)
    again = evaluate(result.eval_pipeline, holdout)
    assert again["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert again["log_loss"] == pytest.approx(result.metrics["log_loss"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns="segment"), "no 'segment' column"),
        (lambda f: f.assign(segment=["E", *f["segment"].iloc[1:]]), "'E'"),
        (lambda f: f.assign(segment=[None, *f["segment"].iloc[1:]]), "no 'segment'"),
        (lambda f: f.assign(segment="A"), "at least 2 segments"),
        (lambda f: f.assign(segment=["B"] * 3 + ["A"] * (len(f) - 3)), "too few rows per segment"),
        (lambda f: f.drop(columns="profession"), "profession"),
    ],
)
def test_train_model_rejects_bad_labelled_data(mutate, message: str) -> None:
    frame = mutate(make_labelled(200, seed=9))
    with pytest.raises(DataError, match=message):
        train_model(frame, options())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cv_folds": 1}, "cv_folds"),
        ({"holdout_share": 0.0}, "holdout_share"),
        ({"holdout_share": 1.0}, "holdout_share"),
        ({"candidates": []}, "no candidates"),
        ({"candidates": ["svm"]}, "svm"),
        ({"row_cap": 1}, "row_cap"),
    ],
)
def test_train_model_rejects_bad_options(overrides: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        train_model(make_labelled(200, seed=9), options(**overrides))


@pytest.mark.realdata
def test_train_model_on_real_data() -> None:
    path = require_file(REAL_TRAIN_CSV)
    frame = pd.read_csv(path).rename(columns=KAGGLE_COLUMNS)
    result = train_model(frame, TrainingOptions(candidates=FAST, cv_folds=3, tuning=TuningOptions(n_candidates=3)))
    assert result.model_name == "hist_gradient_boosting"
    assert result.metrics["accuracy"] > 0.48
    assert result.metrics["macro_f1"] > 0.4
    assert np.array(result.metrics["confusion_matrix"]).sum() == result.n_holdout
