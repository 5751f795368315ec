"""Unit tests for segmentation.training: candidate comparison, tuning, train_model and segment profiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from segmentation.columns import ALLOWED_CATEGORIES, KAGGLE_COLUMNS, SEGMENTS
from segmentation.errors import DataError, ModelError
from segmentation.features import derive_features
from segmentation.training import (
    CANDIDATES,
    COMPARISON_COLUMNS,
    PARAM_GRIDS,
    TrainingResult,
    brier_score,
    build_candidate,
    calibration_errors,
    choose_candidate,
    compare_candidates,
    default_params,
    json_safe,
    segment_profiles,
    train_model,
    tune,
    tuning_beats_defaults,
)

REAL_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "customers_train.csv"
FAST = ["hist_gradient_boosting"]
FAST_TUNING = {"tune_candidates": 2, "tune_min_resources": 400}  # keeps the unit tests quick


def make_labelled(n: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic clean, labelled customers whose attributes are correlated with the segment."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, n)
    professions = ALLOWED_CATEGORIES["profession"]
    preferred = np.array([professions[0], professions[5], professions[2], professions[7]])[codes]
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype="int64"),
            "gender": rng.choice(["Female", "Male"], n).astype(object),
            "ever_married": np.where(rng.random(n) < 0.2 + 0.2 * codes, "Yes", "No").astype(object),
            "graduated": np.where(rng.random(n) < 0.8 - 0.2 * codes, "Yes", "No").astype(object),
            "profession": np.where(rng.random(n) < 0.6, preferred, rng.choice(professions, n)).astype(object),
            "spending_score": np.where(
                rng.random(n) < 0.7, np.array(["Low", "Average", "High", "Low"])[codes], "Average"
            ).astype(object),
            "var_1": rng.choice(ALLOWED_CATEGORIES["var_1"], n).astype(object),
            "age": (22 + 10 * codes + rng.normal(0, 6, n)).round().clip(18, 89),
            "work_experience": rng.integers(0, 15, n).astype(float),
            "family_size": (1 + codes + rng.integers(0, 3, n)).astype(float),
            "segment": np.array(SEGMENTS)[codes].astype(object),
        }
    )
    for column in ("ever_married", "graduated", "profession", "work_experience", "family_size"):
        frame.loc[rng.random(n) < 0.05, column] = None
    return frame


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    return make_labelled(2000, seed=7)


@pytest.fixture(scope="module")
def result(labelled: pd.DataFrame) -> TrainingResult:
    return train_model(labelled, candidates=FAST, cv_folds=2, random_state=3, **FAST_TUNING)


def _xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return derive_features(frame), frame["segment"]


# --- registry ---------------------------------------------------------------------------------------


def test_candidates_and_grids_cover_each_other() -> None:
    assert (
        set(CANDIDATES)
        == set(PARAM_GRIDS)
        == {
            "logistic_regression",
            "knn",
            "decision_tree",
            "naive_bayes",
            "random_forest",
            "gradient_boosting",
            "hist_gradient_boosting",
            "hgb_rf_vote",
        }
    )
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


# --- compare_candidates / tune ----------------------------------------------------------------------


def test_compare_candidates_table() -> None:
    X, y = _xy(make_labelled(600, seed=1))
    names = ["naive_bayes", "decision_tree", "logistic_regression"]
    table = compare_candidates(X, y, names, cv_folds=3, random_state=0)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert table.shape == (3, len(COMPARISON_COLUMNS))
    assert sorted(table["name"]) == sorted(names)
    f1 = table["macro_f1_mean"].to_numpy()
    assert (np.diff(f1) <= 0).all()
    for metric in ("accuracy_mean", "macro_f1_mean"):
        assert table[metric].between(0.25, 1.0).all()  # better than chance on correlated data
    assert (table["log_loss_mean"] > 0).all()
    assert (table[["accuracy_std", "macro_f1_std", "log_loss_std", "fit_seconds"]] >= 0).all().all()


def test_compare_candidates_sorts_by_f1_then_log_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = {"GaussianNB": (0.5, 1.2), "DecisionTreeClassifier": (0.5, 0.9), "KNeighborsClassifier": (0.6, 2.0)}

    def fake_cross_validate(pipeline, X, y, **kwargs):
        f1, loss = fixed[type(pipeline.named_steps["classifier"]).__name__]
        folds = kwargs["cv"].get_n_splits()
        return {
            "test_accuracy": np.full(folds, 0.5),
            "test_macro_f1": np.full(folds, f1),
            "test_neg_log_loss": np.full(folds, -loss),
            "fit_time": np.full(folds, 0.1),
            "score_time": np.full(folds, 0.01),
            "estimator": [f1] * folds,
        }

    monkeypatch.setattr("segmentation.training.cross_validate", fake_cross_validate)
    X, y = _xy(make_labelled(50, seed=2))
    table = compare_candidates(X, y, ["naive_bayes", "decision_tree", "knn"], cv_folds=2, random_state=0)
    assert table["name"].tolist() == ["knn", "decision_tree", "naive_bayes"]
    assert table["log_loss_mean"].tolist() == pytest.approx([2.0, 0.9, 1.2])
    assert table["fit_seconds"].tolist() == pytest.approx([0.1, 0.1, 0.1])


def _fake_folds(monkeypatch: pytest.MonkeyPatch, folds_by_class: dict[str, tuple[list, list, float]]) -> None:
    """Replace cross_validate with per-fold (macro-F1, log loss) lists and a model size per estimator class."""

    def fake_cross_validate(pipeline, X, y, **kwargs):
        f1, loss, size = folds_by_class[type(pipeline.named_steps["classifier"]).__name__]
        return {
            "test_accuracy": np.asarray(f1),
            "test_macro_f1": np.asarray(f1),
            "test_neg_log_loss": -np.asarray(loss),
            "fit_time": np.full(len(f1), 0.1),
            "score_time": np.full(len(f1), 0.01),
            "estimator": [bytes(size)] * len(f1),
        }

    monkeypatch.setattr("segmentation.training.cross_validate", fake_cross_validate)


def test_choice_prefers_the_cheaper_model_within_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_folds(
        monkeypatch,
        {
            # best, but big
            "KNeighborsClassifier": ([0.60, 0.62, 0.58, 0.61], [1.00, 1.00, 1.00, 1.00], 50_000),
            # paired shortfall 0.005 on average with a noisy spread: within one standard error, and small
            "DecisionTreeClassifier": ([0.62, 0.60, 0.56, 0.61], [1.00, 1.01, 0.99, 1.00], 1_000),
            # consistently 0.05 worse: outside the noise even though it is the smallest
            "GaussianNB": ([0.55, 0.57, 0.53, 0.56], [1.00, 1.00, 1.00, 1.00], 100),
        },
    )
    X, y = _xy(make_labelled(50, seed=2))
    table = compare_candidates(X, y, ["naive_bayes", "decision_tree", "knn"], cv_folds=4, random_state=0)
    assert table["name"].tolist() == ["knn", "decision_tree", "naive_bayes"]
    assert table["within_noise"].tolist() == [True, True, False]
    assert table["model_bytes"].tolist()[0] > table["model_bytes"].tolist()[1] > table["model_bytes"].tolist()[2]
    assert choose_candidate(table) == "decision_tree"


def test_choice_keeps_the_best_when_the_cheaper_one_is_worse_calibrated(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_folds(
        monkeypatch,
        {
            "KNeighborsClassifier": ([0.60, 0.62, 0.58, 0.61], [1.00, 1.00, 1.00, 1.00], 50_000),
            "DecisionTreeClassifier": ([0.62, 0.60, 0.56, 0.61], [1.10, 1.11, 1.09, 1.10], 1_000),
        },
    )
    X, y = _xy(make_labelled(50, seed=2))
    table = compare_candidates(X, y, ["decision_tree", "knn"], cv_folds=4, random_state=0)
    assert table["within_noise"].tolist() == [True, False]
    assert choose_candidate(table) == "knn"


def test_unknown_candidate_is_rejected(labelled: pd.DataFrame) -> None:
    X, y = _xy(labelled)
    with pytest.raises(ModelError, match="xgboost") as caught:
        compare_candidates(X, y, ["knn", "xgboost"], cv_folds=2, random_state=0)
    assert "hist_gradient_boosting" in str(caught.value)  # lists the allowed names
    with pytest.raises(ModelError, match="svm"):
        train_model(labelled, candidates=["svm"], cv_folds=2)
    with pytest.raises(ModelError, match="svm"):
        tune("svm", X, y, cv_folds=2, random_state=0)


def test_tune_returns_fitted_pipeline_from_grid() -> None:
    X, y = _xy(make_labelled(400, seed=4))
    pipeline, params = tune("decision_tree", X, y, cv_folds=3, random_state=0)
    assert isinstance(pipeline, Pipeline)
    assert set(params) == set(PARAM_GRIDS["decision_tree"])
    for key, value in params.items():
        assert value in PARAM_GRIDS["decision_tree"][key]
        assert pipeline.get_params()[key] == value
    assert set(pipeline.predict(X.head(20))) <= set(SEGMENTS)


def test_default_params_are_the_untuned_pipeline_values() -> None:
    for name, grid in PARAM_GRIDS.items():
        defaults = default_params(name)
        assert set(defaults) == set(grid)
        assert defaults == {key: build_candidate(name, 42).get_params()[key] for key in grid}
    assert default_params("decision_tree") == {"classifier__max_depth": 6, "classifier__min_samples_leaf": 10}


def test_tuned_settings_must_beat_the_defaults_by_more_than_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _xy(make_labelled(600, seed=5))
    same = build_candidate("knn", 0)
    assert not tuning_beats_defaults("knn", same, X, y, scoring="neg_log_loss", cv_folds=3, random_state=0)
    one_neighbour = build_candidate("knn", 0).set_params(classifier__n_neighbors=1)
    assert not tuning_beats_defaults("knn", one_neighbour, X, y, scoring="neg_log_loss", cv_folds=3, random_state=0)
    # Defaults of one neighbour give 0/1 probabilities: 30 neighbours beat them far beyond noise.
    monkeypatch.setitem(CANDIDATES, "knn", lambda rs: KNeighborsClassifier(n_neighbors=1))
    thirty = build_candidate("knn", 0).set_params(classifier__n_neighbors=30)
    assert tuning_beats_defaults("knn", thirty, X, y, scoring="neg_log_loss", cv_folds=3, random_state=0)


@pytest.mark.parametrize("beats", [True, False])
def test_train_model_keeps_defaults_unless_tuning_beats_them(
    monkeypatch: pytest.MonkeyPatch, labelled: pd.DataFrame, beats: bool
) -> None:
    import segmentation.training as training

    searched: list[dict] = []
    real_search = training._search

    def spy(*args, **kwargs):
        search = real_search(*args, **kwargs)
        searched.append(dict(search.best_params_))
        return search

    monkeypatch.setattr(training, "_search", spy)
    # Only settings that differ from the defaults, so that the rule decides the outcome.
    monkeypatch.setitem(PARAM_GRIDS, "knn", {"classifier__n_neighbors": [10, 50], "classifier__weights": ["distance"]})
    monkeypatch.setattr(training, "tuning_beats_defaults", lambda *a, **k: beats)
    trained = train_model(labelled, candidates=["knn"], cv_folds=2, random_state=3)
    defaults = default_params("knn")
    assert searched[0] != defaults
    assert trained.params == (searched[0] if beats else defaults)
    assert trained.metrics["tuned_over_defaults"] is beats
    for key, value in trained.params.items():
        assert trained.pipeline.get_params()[key] == value
    assert trained.pipeline.predict(derive_features(labelled.head(5))).shape == (5,)


# --- train_model ------------------------------------------------------------------------------------


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
    assert metrics["predict_rows_per_s"] > 1000
    assert metrics["cv_scoring"] == "neg_log_loss" and metrics["cv_score"] < 0
    assert [row["name"] for row in result.comparison] == FAST
    assert sum(result.label_shares.values()) == pytest.approx(1.0)
    assert result.seconds > 0
    json.dumps([result.params, result.metrics, result.comparison, result.label_shares])  # JSON-safe


def test_train_model_pipeline_is_fitted_on_train_split_only(result: TrainingResult, labelled: pd.DataFrame) -> None:
    for key, value in result.params.items():
        assert result.pipeline.get_params()[key] == value
    one_hot = train_model(labelled, candidates=["naive_bayes"], cv_folds=2, random_state=3)
    scaler = one_hot.pipeline.named_steps["features"].named_transformers_["numeric"].named_steps["scale"]
    assert scaler.n_samples_seen_ == one_hot.n_train


def test_hist_gradient_boosting_uses_native_categories(result: TrainingResult) -> None:
    classifier = result.pipeline.named_steps["classifier"]
    assert classifier.is_categorical_ is not None
    assert classifier.is_categorical_.sum() == 6  # the six categorical columns, numeric ones are not
    pipeline = build_candidate("hist_gradient_boosting", 0)
    categorical = dict((name, step) for name, step, _ in pipeline.named_steps["features"].transformers)["categorical"]
    assert "ordinal" in categorical.named_steps


def test_train_model_pipeline_scores_new_customers(result: TrainingResult) -> None:
    fresh = derive_features(make_labelled(300, seed=99).drop(columns="segment"))
    proba = result.pipeline.predict_proba(fresh)
    assert proba.shape == (300, 4)
    assert list(result.pipeline.classes_) == list(SEGMENTS)
    truth = make_labelled(300, seed=99)["segment"]
    assert (result.pipeline.predict(fresh) == truth).mean() > 0.5


def test_train_model_is_deterministic(result: TrainingResult, labelled: pd.DataFrame) -> None:
    again = train_model(labelled, candidates=FAST, cv_folds=2, random_state=3, **FAST_TUNING)

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


def test_train_model_does_not_mutate_input(labelled: pd.DataFrame) -> None:
    small = labelled.head(400).copy()
    before = small.copy()
    train_model(small, candidates=["naive_bayes"], cv_folds=2, random_state=0)
    pd.testing.assert_frame_equal(small, before)


def test_train_model_row_cap(labelled: pd.DataFrame) -> None:
    capped = train_model(labelled, candidates=["naive_bayes"], cv_folds=2, row_cap=500, random_state=0)
    assert capped.n_train + capped.n_holdout == 500
    full_shares = labelled["segment"].value_counts(normalize=True)
    for segment, share in capped.label_shares.items():
        assert share == pytest.approx(full_shares[segment], abs=0.01)  # stratified


def test_train_model_keeps_rows_with_gaps() -> None:
    frame = make_labelled(400, seed=8)
    frame.loc[frame.index[:100], ["profession", "work_experience", "ever_married"]] = None
    fitted = train_model(frame, candidates=["naive_bayes"], cv_folds=2, random_state=0)
    assert fitted.n_train + fitted.n_holdout == 400


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
        train_model(frame, candidates=["naive_bayes"], cv_folds=2)


@pytest.mark.parametrize(
    "kwargs", [{"cv_folds": 1}, {"holdout_share": 0.0}, {"holdout_share": 1.0}, {"candidates": []}]
)
def test_train_model_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ModelError):
        train_model(make_labelled(200, seed=9), **{"candidates": ["naive_bayes"], **kwargs})


# --- segment_profiles / json_safe -------------------------------------------------------------------


def _profile_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment": ["A", "A", "A", "D", None],
            "age": [30, 40, 50, 33, 70],
            "ever_married": ["Yes", "Yes", "No", "No", "Yes"],
            "graduated": ["Yes", "No", "No", None, "Yes"],
            "profession": ["Healthcare", "Healthcare", "Artist", "Engineer", "Lawyer"],
            "spending_score": ["Low", "Low", "High", "High", "Average"],
            "family_size": [4.0, 4.0, 2.0, 1.0, 5.0],
            "work_experience": [1.0, np.nan, 3.0, np.nan, 9.0],
        }
    )


def test_segment_profiles_numbers_and_sentence() -> None:
    frame = _profile_frame()
    before = frame.copy()
    profiles = segment_profiles(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert list(profiles) == ["A", "D"]  # only segments present; unlabelled row ignored
    a = profiles["A"]
    assert a["n"] == 3 and isinstance(a["n"], int)
    assert a["share"] == pytest.approx(0.75) and isinstance(a["share"], float)
    assert a["median_age"] == 40.0
    assert a["share_married"] == pytest.approx(2 / 3)
    assert a["share_graduated"] == pytest.approx(1 / 3)
    assert a["top_profession"] == "Healthcare"
    assert a["top_profession_share"] == pytest.approx(2 / 3)
    assert a["top_spending_score"] == "Low"
    assert a["median_family_size"] == 4.0
    assert a["median_work_experience"] == 2.0
    assert a["description"] == (
        "Segment A (75 % of customers): typically 40 years old, mostly married, mostly without a degree, "
        "often in healthcare, low spenders, family of 4."
    )
    d = profiles["D"]
    assert d["share"] == pytest.approx(0.25)
    assert d["share_graduated"] is None  # no non-missing values
    assert d["median_work_experience"] is None
    assert d["description"].startswith("Segment D (25 % of customers): typically 33 years old, mostly unmarried")
    assert "often in engineering" in d["description"] and "high spenders" in d["description"]
    json.dumps(profiles)


def test_segment_profiles_custom_column_and_missing_columns() -> None:
    frame = _profile_frame().rename(columns={"segment": "predicted"})
    assert set(segment_profiles(frame, segment_col="predicted")) == {"A", "D"}
    with pytest.raises(DataError, match="segment"):
        segment_profiles(frame)


def test_json_safe() -> None:
    value = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": [np.nan, np.inf, 1.0],
        "d": np.array([1, 2]),
        "e": (np.bool_(True), None, pd.NA),
        1: "x",
    }
    safe = json_safe(value)
    assert safe == {"a": 0.5, "b": 3, "c": [None, None, 1.0], "d": [1, 2], "e": [True, None, None], "1": "x"}
    assert type(safe["b"]) is int and type(safe["a"]) is float
    json.dumps(safe, allow_nan=False)


# --- real data ---------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_train_model_on_real_data() -> None:
    if not REAL_DATA.exists():
        pytest.skip(f"{REAL_DATA} is absent")
    frame = pd.read_csv(REAL_DATA).rename(columns=KAGGLE_COLUMNS)
    result = train_model(frame, candidates=["hist_gradient_boosting"], cv_folds=3, tune_candidates=3)
    assert result.model_name == "hist_gradient_boosting"
    assert result.metrics["accuracy"] > 0.48
    assert result.metrics["macro_f1"] > 0.4
    assert np.array(result.metrics["confusion_matrix"]).sum() == result.n_holdout


def test_train_model_with_a_given_holdout_evaluates_exactly_it(labelled: pd.DataFrame) -> None:
    from segmentation.training import evaluate

    train, holdout = labelled.iloc[:1600], labelled.iloc[1600:]
    result = train_model(train, holdout=holdout, candidates=["logistic_regression"], cv_folds=2, random_state=0)
    assert (result.n_train, result.n_holdout) == (len(train), len(holdout))
    assert sum(map(sum, result.metrics["confusion_matrix"])) == len(holdout)
    again = evaluate(result.pipeline, holdout)
    assert again["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert again["log_loss"] == pytest.approx(result.metrics["log_loss"])


def test_candidate_names_shared_with_the_dags_match_the_estimators() -> None:
    from segmentation.columns import CANDIDATE_NAMES

    assert tuple(CANDIDATES) == CANDIDATE_NAMES


# --- calibration / tuning settings ---------------------------------------------------------------------


def test_calibration_errors_and_brier_known_values() -> None:
    classes = ["A", "B"]
    y = np.array(["A", "A", "B", "B"], dtype=object)
    perfect = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert calibration_errors(y, perfect, classes) == {"A": 0.0, "B": 0.0}
    assert brier_score(y, perfect, classes) == 0.0
    flat = np.full((4, 2), 0.5)  # calibrated on average: half the rows are A
    assert calibration_errors(y, flat, classes) == pytest.approx({"A": 0.0, "B": 0.0})
    assert brier_score(y, flat, classes) == pytest.approx(0.5)
    over = np.array([[0.9, 0.1]] * 4)  # says A with 0.9, true for half
    assert calibration_errors(y, over, classes) == pytest.approx({"A": 0.4, "B": 0.4})
    assert brier_score(y, over, classes) == pytest.approx((2 * 0.01 + 2 * 0.81) * 2 / 4)


def test_tuning_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from segmentation.config import get_settings
    from segmentation.errors import ConfigError

    defaults = get_settings()
    assert (defaults.tune_candidates, defaults.tune_factor, defaults.tune_scoring) == (12, 3, "neg_log_loss")
    monkeypatch.setenv("SEGMENTATION_TUNE_CANDIDATES", "3")
    monkeypatch.setenv("SEGMENTATION_TUNE_SCORING", "f1_macro")
    monkeypatch.setenv("SEGMENTATION_COMPARE_ROW_CAP", "300")
    settings = get_settings()
    assert (settings.tune_candidates, settings.tune_scoring, settings.compare_row_cap) == (3, "f1_macro", 300)
    X, y = _xy(make_labelled(400, seed=4))
    _, params = tune("decision_tree", X, y, cv_folds=2, random_state=0)
    assert set(params) == set(PARAM_GRIDS["decision_tree"])
    monkeypatch.setenv("SEGMENTATION_TUNE_SCORING", "roc")
    with pytest.raises(ConfigError, match="TUNE_SCORING"):
        get_settings()


def test_compare_candidates_row_cap() -> None:
    X, y = _xy(make_labelled(600, seed=1))
    seen = []

    def fake_cross_validate(pipeline, X, y, **kwargs):
        seen.append(len(X))
        folds = kwargs["cv"].get_n_splits()
        ones = np.full(folds, 0.5)
        return {
            "test_accuracy": ones,
            "test_macro_f1": ones,
            "test_neg_log_loss": -ones,
            "fit_time": ones,
            "score_time": ones,
            "estimator": [None] * folds,
        }

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("segmentation.training.cross_validate", fake_cross_validate)
        compare_candidates(X, y, ["naive_bayes"], cv_folds=2, random_state=0, row_cap=250)
        compare_candidates(X, y, ["naive_bayes"], cv_folds=2, random_state=0)
    assert seen == [250, 600]
