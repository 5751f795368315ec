"""Unit tests for segmentation.labelled: model input frame, checked labels, stratified caps, stable holdout."""

from __future__ import annotations

import pandas as pd
import pytest

from segmentation.columns import DERIVED_COLUMNS, MODEL_INPUT_COLUMNS
from segmentation.errors import DataError
from segmentation.labelled import cap_rows, check_class_counts, holdout_mask, labels_of, model_frame, with_derived
from tests.helpers import make_labelled


def test_holdout_is_stable_and_near_its_share() -> None:
    ids = pd.Series(range(1, 100_001))
    mask = holdout_mask(ids, 0.2)
    assert 0.19 < mask.mean() < 0.21
    assert holdout_mask(ids.iloc[::-1], 0.2).sort_index().equals(mask)
    # A customer's side never depends on who else is in the batch.
    assert holdout_mask(ids.iloc[5_000:6_000], 0.2).equals(mask.iloc[5_000:6_000])


def test_model_frame_selects_the_inputs_in_order() -> None:
    frame = with_derived(make_labelled(20, seed=1))
    selected = model_frame(frame[list(reversed(frame.columns))])
    assert list(selected.columns) == list(MODEL_INPUT_COLUMNS)
    with pytest.raises(DataError, match="spending_rank"):
        model_frame(make_labelled(20, seed=1))


def test_with_derived_adds_only_when_absent() -> None:
    frame = make_labelled(20, seed=1)
    derived = with_derived(frame)
    assert set(DERIVED_COLUMNS) <= set(derived.columns)
    assert with_derived(derived) is derived  # already there: not recomputed


def test_labels_of() -> None:
    frame = make_labelled(20, seed=1)
    assert labels_of(frame).tolist() == frame["segment"].tolist()
    with pytest.raises(DataError, match="no 'segment' column"):
        labels_of(frame.drop(columns="segment"))
    with pytest.raises(DataError, match="1 labelled rows have no"):
        labels_of(frame.assign(segment=[None, *frame["segment"].iloc[1:]]))
    with pytest.raises(DataError, match="'E'"):
        labels_of(frame.assign(segment=["E", *frame["segment"].iloc[1:]]))


def test_check_class_counts() -> None:
    # 5 folds on 80 % of the rows need ceil(5 / 0.8) + 1 = 8 rows per segment; a 20 % holdout needs 6.
    check_class_counts(pd.Series(["A"] * 8 + ["B"] * 8), cv_folds=5, holdout_share=0.2)
    with pytest.raises(DataError, match=r"\{'B': 7\}; need at least 8"):
        check_class_counts(pd.Series(["A"] * 8 + ["B"] * 7), cv_folds=5, holdout_share=0.2)
    with pytest.raises(DataError, match="at least 2 segments"):
        check_class_counts(pd.Series(["A"] * 50), cv_folds=2, holdout_share=0.2)


def test_cap_rows_is_stratified_and_deterministic() -> None:
    frame = make_labelled(1000, seed=2)
    labels = labels_of(frame)
    kept, kept_labels = cap_rows(frame, labels, 200, random_state=0)
    assert len(kept) == len(kept_labels) == 200
    assert kept.index.equals(kept_labels.index)
    shares = labels.value_counts(normalize=True)
    for segment, share in kept_labels.value_counts(normalize=True).items():
        assert share == pytest.approx(shares[segment], abs=0.01)
    again, _ = cap_rows(frame, labels, 200, random_state=0)
    assert again.index.equals(kept.index)
    assert cap_rows(frame, labels, None, 0)[0] is frame and cap_rows(frame, labels, 1000, 0)[0] is frame
