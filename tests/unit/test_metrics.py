"""Unit tests for segmentation.metrics: holdout metrics, calibration, the Brier score and scoring throughput."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from segmentation.columns import MODEL_INPUT_COLUMNS, SEGMENTS
from segmentation.metrics import brier_score, calibration_errors, evaluate, evaluate_frame, predict_rows_per_second
from tests.helpers import make_labelled


class FixedProbabilities:
    """A stand-in fitted classifier: the probabilities of each row are given up front, by ``customer_id``."""

    classes_ = np.array(list(SEGMENTS), dtype=object)

    def __init__(self, proba: dict[int, list[float]]) -> None:
        self.proba = proba
        self.seen: list[pd.DataFrame] = []

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self.seen.append(X)
        return np.array([self.proba[int(i)] for i in X.index])


def _hand_brier(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> float:
    """The hand-written multi-class Brier score the sklearn call replaced: columns in ``classes`` order."""
    onehot = (np.asarray(y, dtype=object)[:, None] == np.asarray(classes, dtype=object)[None, :]).astype(float)
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def test_calibration_errors_known_values() -> None:
    classes = ["A", "B"]
    y = np.array(["A", "A", "B", "B"], dtype=object)
    perfect = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert calibration_errors(y, perfect, classes) == {"A": 0.0, "B": 0.0}
    flat = np.full((4, 2), 0.5)  # calibrated on average: half the rows are A
    assert calibration_errors(y, flat, classes) == pytest.approx({"A": 0.0, "B": 0.0})
    over = np.array([[0.9, 0.1]] * 4)  # says A with 0.9, true for half
    assert calibration_errors(y, over, classes) == pytest.approx({"A": 0.4, "B": 0.4})


def test_calibration_error_weighs_each_bin_by_its_rows() -> None:
    y = np.array(["A"] * 3 + ["B"] * 1, dtype=object)
    # Two bins for A: 0.95 (two rows, both A: gap 0.05 each) and 0.15 (two rows, one A: gap |0.3 - 1| = 0.7).
    proba_a = np.array([0.95, 0.95, 0.15, 0.15])
    proba = np.column_stack([proba_a, 1 - proba_a])
    errors = calibration_errors(y, proba, ["A", "B"], bins=10)
    assert errors["A"] == pytest.approx((0.05 + 0.05 + 0.7) / 4)


def test_brier_score_known_values() -> None:
    classes = list(SEGMENTS)
    y = np.array(["A", "B", "C", "D"], dtype=object)
    assert brier_score(y, np.eye(4), classes) == 0.0
    assert brier_score(y, np.full((4, 4), 0.25), classes) == pytest.approx(0.75)  # the uniform forecast
    wrong = np.roll(np.eye(4), 1, axis=1)  # sure, and always wrong
    assert brier_score(y, wrong, classes) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("n_classes", "seed"),
    [
        (4, 0),
        (4, 1),
        (3, 2),
        (2, 3),
    ],
)
def test_brier_score_equals_the_hand_written_formula(n_classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = list(SEGMENTS[:n_classes])
    y = rng.choice(classes, 500).astype(object)
    proba = rng.dirichlet(np.ones(n_classes), 500)
    assert brier_score(y, proba, classes) == pytest.approx(_hand_brier(y, proba, classes), rel=1e-12)


def test_brier_score_of_two_classes_known_values() -> None:
    classes = ["A", "B"]
    y = np.array(["A", "A", "B", "B"], dtype=object)
    assert brier_score(y, np.full((4, 2), 0.5), classes) == pytest.approx(0.5)
    over = np.array([[0.9, 0.1]] * 4)  # says A with 0.9, true for half
    assert brier_score(y, over, classes) == pytest.approx((2 * 0.01 + 2 * 0.81) * 2 / 4)


def test_brier_score_with_a_class_absent_from_the_labels() -> None:
    rng = np.random.default_rng(3)
    classes = list(SEGMENTS)
    y = rng.choice(["A", "B", "C"], 200).astype(object)  # no D in this batch
    proba = rng.dirichlet(np.ones(4), 200)
    assert brier_score(y, proba, classes) == pytest.approx(_hand_brier(y, proba, classes), rel=1e-12)


def test_brier_score_reads_the_columns_in_the_order_of_classes() -> None:
    rng = np.random.default_rng(4)
    classes = ["C", "A", "D", "B"]
    y = rng.choice(classes, 200).astype(object)
    proba = rng.dirichlet(np.ones(4), 200)
    assert brier_score(y, proba, classes) == pytest.approx(_hand_brier(y, proba, classes), rel=1e-12)


def test_evaluate_frame_metrics() -> None:
    # Six customers, known probabilities: rows 0-3 right, row 4 (true B) predicted A, row 5 (true C) predicted D.
    proba = {
        0: [0.7, 0.1, 0.1, 0.1],
        1: [0.1, 0.7, 0.1, 0.1],
        2: [0.1, 0.1, 0.7, 0.1],
        3: [0.1, 0.1, 0.1, 0.7],
        4: [0.6, 0.2, 0.1, 0.1],
        5: [0.1, 0.1, 0.3, 0.5],
    }
    y = pd.Series(["A", "B", "C", "D", "B", "C"])
    X = pd.DataFrame({c: [0.0] * 6 for c in MODEL_INPUT_COLUMNS})
    metrics = evaluate_frame(FixedProbabilities(proba), X, y)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["confusion_labels"] == list(SEGMENTS)
    assert metrics["confusion_matrix"] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]]
    # F1: A 2/3 (precision 1/2, recall 1), B 2/3, C 2/3, D 2/3.
    assert metrics["per_class_f1"] == pytest.approx(dict.fromkeys(SEGMENTS, 2 / 3))
    assert metrics["macro_f1"] == pytest.approx(2 / 3)
    truth = [0.7, 0.7, 0.7, 0.7, 0.2, 0.3]
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log(truth)))
    matrix = np.array([proba[i] for i in range(6)])
    assert metrics["brier"] == pytest.approx(_hand_brier(y.to_numpy(dtype=object), matrix, list(SEGMENTS)))
    assert metrics["ece_mean"] == pytest.approx(np.mean(list(metrics["ece_per_class"].values())))
    assert set(metrics["ece_per_class"]) == set(SEGMENTS)


def test_evaluate_adds_derived_columns_and_is_json_safe() -> None:
    labelled = make_labelled(40, seed=1)
    model = FixedProbabilities({i: [0.4, 0.3, 0.2, 0.1] for i in labelled.index})
    metrics = evaluate(model, labelled)
    assert list(model.seen[0].columns) == list(MODEL_INPUT_COLUMNS)  # derived columns added, inputs selected
    counts = labelled["segment"].value_counts()
    assert metrics["confusion_matrix"] == [[int(counts[s]), 0, 0, 0] for s in SEGMENTS]  # always predicts A
    assert metrics == evaluate_frame(model, model.seen[0], labelled["segment"].astype(str))
    json.dumps(metrics, allow_nan=False)


def test_predict_rows_per_second_repeats_small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([10.0, 12.0])
    monkeypatch.setattr("segmentation.metrics.time", SimpleNamespace(perf_counter=lambda: next(clock)))
    model = FixedProbabilities({i: [0.25] * 4 for i in range(100)})
    X = pd.DataFrame({"x": np.arange(100.0)})
    assert predict_rows_per_second(model, X, min_rows=20_000) == pytest.approx(10_000.0)  # 20,000 rows in 2 s
    batch = model.seen[0]
    assert len(batch) == 20_000
    assert batch["x"].tolist() == list(np.arange(100.0)) * 200  # the rows of X, repeated in order


def test_predict_rows_per_second_of_nothing_is_nan() -> None:
    assert np.isnan(predict_rows_per_second(FixedProbabilities({}), pd.DataFrame({"x": []})))
