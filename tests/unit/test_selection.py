"""Unit tests for segmentation.selection: comparing candidates, choosing one, tuning it, keeping its defaults."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from segmentation.candidates import CANDIDATES, PARAM_GRIDS, build_candidate, default_params
from segmentation.columns import SEGMENTS
from segmentation.errors import ConfigError, ModelError
from segmentation.selection import (
    COMPARISON_COLUMNS,
    TunedModel,
    TuningOptions,
    check_folds,
    choose_candidate,
    compare_candidates,
    tune,
    tune_or_keep_defaults,
    tuning_beats_defaults,
    within_noise,
)
from tests.helpers import make_xy

# Small searches keep the unit tests quick.
FAST_TUNING = TuningOptions(n_candidates=2, min_resources=100)


def _fake_cross_validate(monkeypatch: pytest.MonkeyPatch, folds_by_class: dict[str, tuple[list, list, int]]) -> None:
    """Replace cross_validate with per-fold (macro-F1, log loss) lists and a model size per estimator class."""

    def fake_cross_validate(pipeline, X, y, **kwargs):
        f1, loss, size = folds_by_class[type(pipeline.named_steps["classifier"]).__name__]
        return {
            "test_accuracy": np.asarray(f1) - 0.01,
            "test_macro_f1": np.asarray(f1),
            "test_neg_log_loss": -np.asarray(loss),
            "fit_time": np.linspace(0.1, 0.3, len(f1)),
            "score_time": np.full(len(f1), 0.01),
            "estimator": [bytes(size)] * len(f1),
        }

    monkeypatch.setattr("segmentation.selection.cross_validate", fake_cross_validate)


# --- compare_candidates ----------------------------------------------------------------------------


def test_compare_candidates_table() -> None:
    X, y = make_xy(600, seed=1)
    names = ["naive_bayes", "decision_tree", "logistic_regression"]
    table = compare_candidates(X, y, names, cv_folds=3, random_state=0)
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    assert table.shape == (3, len(COMPARISON_COLUMNS))
    assert sorted(table["name"]) == sorted(names)
    f1 = table["macro_f1_mean"].to_numpy()
    assert (np.diff(f1) <= 0).all()
    for metric in ("accuracy_mean", "macro_f1_mean"):
        assert table[metric].between(0.4, 1.0).all()  # well above chance (0.25) on correlated data
    assert table["log_loss_mean"].between(0.0, np.log(4)).all()  # better than the uniform forecast
    assert bool(table.loc[0, "within_noise"])  # the best is within noise of itself


def test_compare_candidates_sorts_by_f1_then_log_loss_and_summarises_the_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cross_validate(
        monkeypatch,
        {
            "GaussianNB": ([0.5, 0.5], [1.2, 1.2], 10),
            "DecisionTreeClassifier": ([0.5, 0.5], [0.9, 0.9], 20),
            "KNeighborsClassifier": ([0.7, 0.5], [2.0, 2.0], 30),
        },
    )
    X, y = make_xy(50, seed=2)
    table = compare_candidates(X, y, ["naive_bayes", "decision_tree", "knn"], cv_folds=2, random_state=0)
    assert table["name"].tolist() == ["knn", "decision_tree", "naive_bayes"]
    assert table["log_loss_mean"].tolist() == pytest.approx([2.0, 0.9, 1.2])
    knn = table.iloc[0]
    assert (knn["macro_f1_mean"], knn["macro_f1_std"]) == pytest.approx((0.6, 0.1))
    assert (knn["accuracy_mean"], knn["accuracy_std"]) == pytest.approx((0.59, 0.1))
    assert knn["log_loss_std"] == pytest.approx(0.0)
    assert table["fit_seconds"].tolist() == pytest.approx([0.2, 0.2, 0.2])  # mean of the folds' fit times
    assert table["predict_seconds"].tolist() == pytest.approx([0.01, 0.01, 0.01])
    assert table["model_bytes"].tolist() == [len(pickle.dumps(bytes(size))) for size in (30, 20, 10)]


def test_choice_prefers_the_cheaper_model_within_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cross_validate(
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
    X, y = make_xy(50, seed=2)
    table = compare_candidates(X, y, ["naive_bayes", "decision_tree", "knn"], cv_folds=4, random_state=0)
    assert table["name"].tolist() == ["knn", "decision_tree", "naive_bayes"]
    assert table["within_noise"].tolist() == [True, True, False]
    assert table["model_bytes"].tolist()[0] > table["model_bytes"].tolist()[1] > table["model_bytes"].tolist()[2]
    assert choose_candidate(table) == "decision_tree"


def test_choice_keeps_the_best_when_the_cheaper_one_is_worse_calibrated(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cross_validate(
        monkeypatch,
        {
            "KNeighborsClassifier": ([0.60, 0.62, 0.58, 0.61], [1.00, 1.00, 1.00, 1.00], 50_000),
            "DecisionTreeClassifier": ([0.62, 0.60, 0.56, 0.61], [1.10, 1.11, 1.09, 1.10], 1_000),
        },
    )
    X, y = make_xy(50, seed=2)
    table = compare_candidates(X, y, ["decision_tree", "knn"], cv_folds=4, random_state=0)
    assert table["within_noise"].tolist() == [True, False]
    assert choose_candidate(table) == "knn"


def test_choose_candidate_falls_back_to_the_first_row() -> None:
    import pandas as pd

    table = pd.DataFrame({"name": ["knn", "naive_bayes"], "model_bytes": [50, 10], "within_noise": [False, False]})
    assert choose_candidate(table) == "knn"
    table["within_noise"] = [True, True]
    assert choose_candidate(table) == "naive_bayes"


def test_compare_candidates_row_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = make_xy(600, seed=1)
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

    monkeypatch.setattr("segmentation.selection.cross_validate", fake_cross_validate)
    compare_candidates(X, y, ["naive_bayes"], cv_folds=2, random_state=0, row_cap=250)
    compare_candidates(X, y, ["naive_bayes"], cv_folds=2, random_state=0)
    assert seen == [250, 600]


def test_unknown_candidates_and_bad_folds_are_rejected() -> None:
    X, y = make_xy(100, seed=2)
    with pytest.raises(ModelError, match="xgboost") as caught:
        compare_candidates(X, y, ["knn", "xgboost"], cv_folds=2, random_state=0)
    assert "hist_gradient_boosting" in str(caught.value)  # lists the allowed names
    with pytest.raises(ModelError, match="svm"):
        tune("svm", X, y, cv_folds=2, random_state=0)
    for bad in (1, 0, 2.0, "3"):
        with pytest.raises(ModelError, match="cv_folds"):
            check_folds(bad)  # type: ignore[arg-type]
    check_folds(np.int64(3))


# --- within_noise ----------------------------------------------------------------------------------


def test_within_noise() -> None:
    assert within_noise(np.array([0.0, 0.0, 0.0]))
    assert within_noise(np.array([-0.05, -0.04, -0.06]))  # better on every fold
    assert not within_noise(np.array([0.05, 0.04, 0.06]))  # worse on every fold, small spread
    # Two folds: the standard error is half their difference.
    assert within_noise(np.array([-0.01, 0.03]))  # mean 0.01, standard error 0.02
    assert not within_noise(np.array([0.01, 0.03]))  # mean 0.02, standard error 0.01
    assert within_noise(np.array([0.0])) and not within_noise(np.array([0.01]))  # one fold: no spread to use


# --- tune ------------------------------------------------------------------------------------------


def test_tune_returns_the_fitted_search_refitted_on_all_rows() -> None:
    X, y = make_xy(400, seed=4)
    search = tune("decision_tree", X, y, cv_folds=3, random_state=0, options=FAST_TUNING)
    pipeline, params = search.best_estimator_, search.best_params_
    assert isinstance(pipeline, Pipeline)
    assert search.n_candidates_[0] == 2
    # Log loss, told every segment (a small halving round may miss one).
    assert search.scoring._score_func.__name__ == "log_loss" and search.scoring._kwargs["labels"] == list(SEGMENTS)
    assert set(params) == set(PARAM_GRIDS["decision_tree"])
    for key, value in params.items():
        assert value in PARAM_GRIDS["decision_tree"][key]
        assert pipeline.get_params()[key] == value
    scaler = pipeline.named_steps["features"].named_transformers_["numeric"].named_steps["scale"]
    assert scaler.n_samples_seen_ == len(X)  # refitted on every row, not on a halving round
    assert set(pipeline.predict(X.head(20))) <= set(SEGMENTS)


def test_tune_samples_at_most_the_whole_grid() -> None:
    X, y = make_xy(400, seed=4)
    search = tune("naive_bayes", X, y, cv_folds=2, random_state=0, options=TuningOptions(n_candidates=50))
    assert search.n_candidates_[0] == len(PARAM_GRIDS["naive_bayes"]["classifier__var_smoothing"]) == 3


@pytest.mark.parametrize(
    ("min_resources", "first_round"),
    [
        (100, 100),  # as asked
        (5, 2 * 3 * 4),  # never below two rows per class per fold (3 folds, 4 classes)
        (10_000, 400 // 3),  # never above one round below the full data (factor 3)
    ],
)
def test_tune_first_round_rows(min_resources: int, first_round: int) -> None:
    X, y = make_xy(400, seed=4)
    options = TuningOptions(n_candidates=2, min_resources=min_resources, scoring="accuracy")
    search = tune("naive_bayes", X, y, cv_folds=3, random_state=0, options=options)
    assert search.n_resources_[0] == first_round


def test_tune_with_the_smallest_allowed_first_round_and_log_loss() -> None:
    X, y = make_xy(2000, seed=7)
    options = TuningOptions(n_candidates=3, min_resources=50, scoring="neg_log_loss")
    # Halving subsamples its folds without stratifying, so rounds this small miss segments on some seeds.
    for seed in range(6):
        search = tune("naive_bayes", X, y, cv_folds=5, random_state=seed, options=options)
        assert search.n_resources_[0] == 50


def test_tuning_options_refuse_an_unknown_scoring() -> None:
    with pytest.raises(ModelError, match="roc"):
        TuningOptions(scoring="roc")


def test_tuning_settings_reach_the_search_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from segmentation.config import get_settings
    from segmentation.tasks.retraining import training_options

    for name in ("CANDIDATES", "FACTOR", "SCORING", "MIN_RESOURCES"):
        monkeypatch.delenv(f"SEGMENTATION_TUNE_{name}", raising=False)
    defaults = get_settings()
    assert (defaults.tune_candidates, defaults.tune_factor, defaults.tune_scoring) == (12, 3, "neg_log_loss")
    monkeypatch.setenv("SEGMENTATION_TUNE_CANDIDATES", "3")
    monkeypatch.setenv("SEGMENTATION_TUNE_SCORING", "f1_macro")
    monkeypatch.setenv("SEGMENTATION_TUNE_MIN_RESOURCES", "60")
    monkeypatch.setenv("SEGMENTATION_COMPARE_ROW_CAP", "300")
    options = training_options(get_settings())
    assert options.compare_row_cap == 300
    X, y = make_xy(400, seed=4)
    # decision_tree's grid has 6 settings: the default of 12 would search all 6.
    search = tune("decision_tree", X, y, cv_folds=2, random_state=0, options=options.tuning)
    assert search.n_candidates_[0] == 3
    assert search.scoring == "f1_macro"
    assert search.n_resources_[0] == 60
    monkeypatch.setenv("SEGMENTATION_TUNE_SCORING", "roc")
    with pytest.raises(ConfigError, match="TUNE_SCORING"):
        get_settings()


# --- tuned or default settings ---------------------------------------------------------------------


def test_tuned_settings_must_beat_the_defaults_by_more_than_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = make_xy(600, seed=5)
    same = build_candidate("knn", 0)
    assert not tuning_beats_defaults("knn", same, X, y, scoring="neg_log_loss", cv_folds=3, random_state=0)
    one_neighbour = build_candidate("knn", 0).set_params(classifier__n_neighbors=1)
    assert not tuning_beats_defaults("knn", one_neighbour, X, y, scoring="neg_log_loss", cv_folds=3, random_state=0)
    # Defaults of one neighbour give 0/1 probabilities: 30 neighbours beat them far beyond noise.
    monkeypatch.setitem(CANDIDATES, "knn", lambda rs: KNeighborsClassifier(n_neighbors=1))
    thirty = build_candidate("knn", 0).set_params(classifier__n_neighbors=30)
    assert tuning_beats_defaults("knn", thirty, X, y, scoring="neg_log_loss", cv_folds=3, random_state=0)


@pytest.mark.parametrize("beats", [True, False])
def test_tune_or_keep_defaults_keeps_defaults_unless_tuning_beats_them(
    monkeypatch: pytest.MonkeyPatch, beats: bool
) -> None:
    import segmentation.selection as selection

    searches: list = []
    real_tune = selection.tune

    def spy(*args, **kwargs):
        searches.append(real_tune(*args, **kwargs))
        return searches[-1]

    checked: list[dict] = []

    def fake_beats(name, tuned, X, y, **kwargs):
        checked.append({"rows": len(X), "scoring": kwargs["scoring"]})
        return beats

    monkeypatch.setattr(selection, "tune", spy)
    monkeypatch.setattr(selection, "tuning_beats_defaults", fake_beats)
    # Only settings that differ from the defaults, so that the rule decides the outcome.
    monkeypatch.setitem(PARAM_GRIDS, "knn", {"classifier__n_neighbors": [10, 50], "classifier__weights": ["distance"]})
    X, y = make_xy(400, seed=7)
    tuned = tune_or_keep_defaults("knn", X, y, cv_folds=2, random_state=3, options=FAST_TUNING, check_row_cap=200)
    assert isinstance(tuned, TunedModel)
    defaults = default_params("knn", 3)
    searched = dict(searches[0].best_params_)
    assert searched != defaults
    assert checked == [{"rows": 200, "scoring": "neg_log_loss"}]  # checked on the capped rows
    assert tuned.params == (searched if beats else defaults)
    assert tuned.tuned_over_defaults is beats
    assert (tuned.cv_score, tuned.cv_scoring) == (searches[0].best_score_, "neg_log_loss")
    for key, value in tuned.params.items():
        assert tuned.pipeline.get_params()[key] == value
    assert tuned.pipeline.named_steps["classifier"].n_samples_fit_ == len(X)  # fitted on all rows either way


def test_tune_or_keep_defaults_skips_the_check_when_the_defaults_won(monkeypatch: pytest.MonkeyPatch) -> None:
    import segmentation.selection as selection

    def never(*args, **kwargs):
        raise AssertionError("the defaults won the search: nothing to check")

    monkeypatch.setattr(selection, "tuning_beats_defaults", never)
    monkeypatch.setitem(PARAM_GRIDS, "naive_bayes", {"classifier__var_smoothing": [1e-2]})  # the default only
    X, y = make_xy(300, seed=7)
    tuned = tune_or_keep_defaults("naive_bayes", X, y, cv_folds=2, random_state=0, options=FAST_TUNING)
    assert tuned.params == default_params("naive_bayes") and not tuned.tuned_over_defaults
