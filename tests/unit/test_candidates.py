"""Unit tests for segmentation.candidates: the catalogue of model families, their encodings and search spaces."""

from __future__ import annotations

import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier

from segmentation.candidates import (
    CANDIDATE_ENCODINGS,
    CANDIDATES,
    PARAM_GRIDS,
    _hist_gradient_boosting,
    build_candidate,
    check_candidate_names,
    default_params,
)
from segmentation.columns import CANDIDATE_NAMES, SEGMENTS
from segmentation.errors import ModelError
from segmentation.preprocessing import ENCODINGS, ORDINAL_CATEGORICAL_MASK
from tests.helpers import make_xy


def test_candidates_and_grids_cover_each_other() -> None:
    assert set(CANDIDATES) == set(PARAM_GRIDS) == set(CANDIDATE_NAMES)
    assert {"logistic_regression", "knn", "decision_tree", "naive_bayes", "random_forest"} < set(CANDIDATES)
    for name, build in CANDIDATES.items():
        estimator = build(11)
        params = estimator.get_params()
        if "random_state" in params:
            assert params["random_state"] == 11, name
        if "n_jobs" in params and name != "logistic_regression":  # its n_jobs is deprecated and unused
            assert params["n_jobs"] == 1, name
        for key in PARAM_GRIDS[name]:
            assert key.startswith("classifier__"), key
            assert key.removeprefix("classifier__") in params, key


def test_candidate_names_shared_with_the_dags_match_the_estimators() -> None:
    assert tuple(CANDIDATES) == CANDIDATE_NAMES


def test_candidate_encodings_are_known() -> None:
    assert set(CANDIDATE_ENCODINGS) <= set(CANDIDATES)
    assert set(CANDIDATE_ENCODINGS.values()) <= set(ENCODINGS)


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_every_candidate_fits_and_predicts_the_segments(name: str) -> None:
    X, y = make_xy(200, seed=4)
    pipeline = build_candidate(name, 0).fit(X, y)
    assert list(pipeline.classes_) == list(SEGMENTS)
    proba = pipeline.predict_proba(X.head(10))
    assert proba.shape == (10, 4)
    assert proba.sum(axis=1) == pytest.approx([1.0] * 10)


def test_hist_gradient_boosting_uses_native_categories() -> None:
    pipeline = build_candidate("hist_gradient_boosting", 0)
    categorical = dict((name, step) for name, step, _ in pipeline.named_steps["features"].transformers)["categorical"]
    assert "ordinal" in categorical.named_steps
    X, y = make_xy(300, seed=4)
    classifier = pipeline.fit(X, y).named_steps["classifier"]
    assert classifier.is_categorical_.tolist() == list(ORDINAL_CATEGORICAL_MASK)
    assert classifier.is_categorical_.sum() == 6  # the six categorical columns, numeric ones are not


def test_hist_gradient_boosting_overrides() -> None:
    booster = _hist_gradient_boosting(5, max_iter=7)
    assert isinstance(booster, HistGradientBoostingClassifier)
    assert (booster.max_iter, booster.random_state, booster.learning_rate) == (7, 5, 0.08)


def test_the_vote_preprocesses_inside_its_members() -> None:
    pipeline = build_candidate("hgb_rf_vote", 3)
    assert pipeline.named_steps["features"] == "passthrough"
    vote = pipeline.named_steps["classifier"]
    assert isinstance(vote, VotingClassifier) and vote.voting == "soft"
    members = dict(vote.estimators)
    assert set(members) == {"hgb", "rf"}
    hgb_features = {name: step for name, step, _ in members["hgb"].named_steps["features"].transformers}
    assert "ordinal" in hgb_features["categorical"].named_steps
    assert members["rf"].named_steps["classifier"].random_state == 3


def test_check_candidate_names() -> None:
    assert check_candidate_names(None) == list(CANDIDATES)
    assert check_candidate_names("knn") == ["knn"]
    assert check_candidate_names(["knn", "naive_bayes", "knn"]) == ["knn", "naive_bayes"]
    with pytest.raises(ModelError, match="xgboost") as caught:
        check_candidate_names(["knn", "xgboost"])
    assert "hist_gradient_boosting" in str(caught.value)  # lists the allowed names
    with pytest.raises(ModelError, match="no candidates"):
        check_candidate_names([])
    with pytest.raises(ModelError, match="svm"):
        build_candidate("svm", 0)


def test_default_params_are_the_untuned_pipeline_values() -> None:
    for name, grid in PARAM_GRIDS.items():
        defaults = default_params(name)
        assert set(defaults) == set(grid)
        assert defaults == {key: build_candidate(name, 42).get_params()[key] for key in grid}
    assert default_params("decision_tree") == {"classifier__max_depth": 6, "classifier__min_samples_leaf": 10}
