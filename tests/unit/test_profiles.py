"""Unit tests for segmentation.profiles: per-segment numbers and the sentence built from them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from segmentation.columns import ALLOWED_CATEGORIES
from segmentation.errors import DataError
from segmentation.profiles import PROFESSION_FIELDS, PROFILE_COLUMNS, SPENDER_WORDS, segment_profiles


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


def test_ties_are_broken_alphabetically() -> None:
    frame = _profile_frame().iloc[:4].assign(profession=["Lawyer", "Artist", "Doctor", "Engineer"])
    assert segment_profiles(frame)["A"]["top_profession"] == "Artist"
    assert segment_profiles(frame)["A"]["top_profession_share"] == pytest.approx(1 / 3)


def test_a_segment_with_nothing_known_still_gets_a_sentence() -> None:
    frame = pd.DataFrame({"segment": ["B", "B"], **{c: [None, None] for c in PROFILE_COLUMNS}})
    b = segment_profiles(frame)["B"]
    assert b["n"] == 2 and b["median_age"] is None and b["top_profession"] is None
    assert b["description"] == "Segment B (100 % of customers)."


def test_segment_profiles_custom_column_and_missing_columns() -> None:
    frame = _profile_frame().rename(columns={"segment": "predicted"})
    assert set(segment_profiles(frame, segment_col="predicted")) == {"A", "D"}
    with pytest.raises(DataError, match="segment"):
        segment_profiles(frame)
    with pytest.raises(DataError, match="family_size"):
        segment_profiles(_profile_frame().drop(columns="family_size"))


def test_every_allowed_category_has_words() -> None:
    assert set(PROFESSION_FIELDS) == set(ALLOWED_CATEGORIES["profession"])
    assert set(SPENDER_WORDS) == set(ALLOWED_CATEGORIES["spending_score"])
