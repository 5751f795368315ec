"""Unit tests for segmentation.explain: exact Shapley values of the nine attributes, for every candidate
family; they add up, follow a planted attribute, and point at what moves the probability (fidelity)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from segmentation.candidates import build_candidate
from segmentation.columns import ATTRIBUTE_COLUMNS, CANDIDATE_NAMES, MODEL_INPUT_COLUMNS, SEGMENTS
from segmentation.errors import DataError, ModelError
from segmentation.explain import _attributes, _model_input, explain_frame, shapley_values
from segmentation.features import derive_features
from tests.helpers import make_labelled


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = derive_features(make_labelled(1600, seed=11))
    return frame.iloc[:1200], frame.iloc[1200:]


@pytest.fixture(scope="module")
def vote(data):
    train, _ = data
    return build_candidate("hgb_rf_vote", 0).fit(train.loc[:, list(MODEL_INPUT_COLUMNS)], train["segment"])


def proba_of(model, frame: pd.DataFrame) -> np.ndarray:
    classes = [str(c) for c in model.classes_]
    return model.predict_proba(_model_input(_attributes(frame)))[:, [classes.index(s) for s in SEGMENTS]]


@pytest.mark.parametrize("name", CANDIDATE_NAMES)
def test_effects_add_up_to_the_probability_minus_the_background_mean(name: str, data) -> None:
    train, held_out = data
    model = build_candidate(name, 0).fit(train.loc[:, list(MODEL_INPUT_COLUMNS)].iloc[:600], train["segment"][:600])
    background = train.iloc[:20]
    for position in range(2):
        row = _attributes(held_out).iloc[position]
        phi, base = shapley_values(model, row, background)
        expected_base = proba_of(model, background).mean(axis=0)
        np.testing.assert_allclose(base, expected_base, atol=1e-9)
        np.testing.assert_allclose(phi.sum(axis=0) + base, proba_of(model, held_out.iloc[[position]])[0], atol=1e-6)


class AgeOnly(ClassifierMixin, BaseEstimator):
    """Probability of A rises with age; nothing else matters."""

    classes_ = np.array(list(SEGMENTS))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p_a = 0.1 + 0.8 * (X["age"].to_numpy(dtype=float) - 18) / 82
        rest = (1 - p_a) / 3
        return np.column_stack([p_a, rest, rest, rest])


def test_a_planted_attribute_gets_the_whole_effect_with_its_sign(data) -> None:
    _, held_out = data
    row = held_out.iloc[[0]].assign(age=95)
    background = held_out.iloc[1:30].assign(age=30)
    reasons = explain_frame(AgeOnly(), row, background, top=9)[0]
    assert reasons[0]["attribute"] == "age" and reasons[0]["value"] == 95
    assert reasons[0]["effect"] == pytest.approx(0.8 * (95 - 30) / 82)
    assert all(r["effect"] == pytest.approx(0.0, abs=1e-12) for r in reasons[1:])
    # A young customer is assigned to B (A is unlikely): age lowers A and so raises B.
    young = explain_frame(AgeOnly(), held_out.iloc[[0]].assign(age=18), background, top=9)[0]
    assert young[0]["attribute"] == "age" and young[0]["effect"] > 0


def test_reasons_shape_and_json(vote, data) -> None:
    _, held_out = data
    rows = held_out.iloc[:3].copy()
    rows.loc[rows.index[0], "profession"] = None
    before = rows.copy()
    reasons = explain_frame(vote, rows, held_out.iloc[3:40])
    pd.testing.assert_frame_equal(rows, before)
    assert len(reasons) == 3 and all(len(r) == 5 for r in reasons)
    for row_reasons in reasons:
        effects = [r["effect"] for r in row_reasons]
        assert effects == sorted(effects, reverse=True)
        assert all(r["attribute"] in ATTRIBUTE_COLUMNS for r in row_reasons)
    everything = explain_frame(vote, rows.iloc[[0]], held_out.iloc[3:40], top=9)[0]
    assert next(r for r in everything if r["attribute"] == "profession")["value"] is None
    json.dumps(reasons)


def test_fidelity_the_top_reason_moves_the_probability_more_than_another_attribute(vote, data) -> None:
    """Replacing a customer's top reason by the background's values lowers the assigned segment's probability
    more than replacing a randomly chosen other attribute, for at least 80 % of held-out customers."""
    train, held_out = data
    background = _attributes(train.sample(30, random_state=1))
    customers = _attributes(held_out.iloc[:60])
    reasons = explain_frame(vote, customers, background, top=9)
    base = proba_of(vote, customers)
    rng = np.random.default_rng(0)

    def drop(position: int, attribute: str, segment: int) -> float:
        replaced = pd.concat([customers.iloc[[position]]] * len(background), ignore_index=True)
        replaced[attribute] = background[attribute].to_numpy()
        return float(base[position, segment] - proba_of(vote, replaced)[:, segment].mean())

    wins = 0
    for position, row_reasons in enumerate(reasons):
        segment = int(np.argmax(base[position]))
        top = row_reasons[0]["attribute"]
        other = rng.choice([a for a in ATTRIBUTE_COLUMNS if a != top])
        wins += drop(position, top, segment) > drop(position, str(other), segment)
    assert wins / len(reasons) >= 0.8


def test_bad_input() -> None:
    with pytest.raises(DataError, match="var_1"):
        explain_frame(AgeOnly(), pd.DataFrame({"age": [30]}))

    class ThreeClasses(AgeOnly):
        classes_ = np.array(["A", "B", "C"])

    row = make_labelled(5, seed=1)
    with pytest.raises(ModelError, match="segments"):
        explain_frame(ThreeClasses(), row)
