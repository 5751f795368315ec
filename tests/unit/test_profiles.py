"""Unit tests for segmentation.profiles: traits ranked by effect size against the population, and the sentence
built from them; segments must never read alike."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from segmentation.columns import ALLOWED_CATEGORIES, KAGGLE_COLUMNS
from segmentation.errors import DataError
from segmentation.profiles import (
    CATEGORY_WORDS,
    MAX_TRAITS,
    MIN_TRAITS,
    PROFILE_COLUMNS,
    TRAIT_THRESHOLD,
    cohens_h,
    segment_profiles,
)
from segmentation.synthetic import generate_customers
from tests.helpers import REAL_TRAIN_CSV, require_file


def planted(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Segment A is young, unmarried and mostly doctors; B is the rest; other columns are noise."""
    rng = np.random.default_rng(seed)
    is_a = np.arange(n) < n // 4
    return pd.DataFrame(
        {
            "segment": np.where(is_a, "A", "B"),
            "age": np.where(is_a, rng.normal(27, 3, n), rng.normal(50, 8, n)).round(),
            "ever_married": np.where(is_a, rng.choice(["Yes", "No"], n, p=[0.1, 0.9]), "Yes"),
            "graduated": rng.choice(["Yes", "No"], n),
            "profession": np.where(is_a, rng.choice(["Doctor", "Artist"], n, p=[0.8, 0.2]), "Artist"),
            "spending_score": rng.choice(["Low", "Average", "High"], n),
            "family_size": rng.integers(1, 6, n).astype(float),
            "work_experience": rng.integers(0, 10, n).astype(float),
            "gender": rng.choice(["Male", "Female"], n),
            "var_1": rng.choice(["Cat_4", "Cat_6"], n),
        }
    )


def test_planted_traits_are_found_ranked_and_worded_with_numbers() -> None:
    frame = planted()
    before = frame.copy()
    profiles = segment_profiles(frame)
    pd.testing.assert_frame_equal(frame, before)
    a = profiles["A"]
    assert a["n"] == 100 and a["share"] == pytest.approx(0.25)
    columns = [t["column"] for t in a["traits"]]
    assert set(columns[:3]) == {"age", "ever_married", "profession"}
    age = next(t for t in a["traits"] if t["column"] == "age")
    assert age["kind"] == "numeric" and age["effect"] < -1
    assert age["text"] == f"younger: median age {age['value']:.0f} against {age['overall']:.0f} overall"
    married = next(t for t in a["traits"] if t["column"] == "ever_married")
    assert married["value"] == "No" and married["text"].startswith("unmarried: ")
    doctors = next(t for t in a["traits"] if t["column"] == "profession")
    assert doctors["value"] == "Doctor"
    assert doctors["effect"] == pytest.approx(cohens_h(doctors["share"], doctors["overall"]))
    assert f"{doctors['share'] / doctors['overall']:.1f}× as common" in doctors["text"]
    effects = [abs(t["effect"]) for t in a["traits"]]
    assert effects == sorted(effects, reverse=True)
    assert a["description"] == "Segment A (25 % of customers): " + "; ".join(t["text"] for t in a["traits"]) + "."
    json.dumps(profiles)


def test_traits_respect_threshold_count_and_one_per_column() -> None:
    profiles = segment_profiles(planted(seed=1))
    for profile in profiles.values():
        traits = profile["traits"]
        assert MIN_TRAITS <= len(traits) <= MAX_TRAITS
        assert len({t["column"] for t in traits}) == len(traits)
        strong = [t for t in traits if abs(t["effect"]) >= TRAIT_THRESHOLD]
        assert len(strong) >= min(MIN_TRAITS, len(traits))


def test_weak_traits_fill_up_to_the_minimum() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    noise = pd.DataFrame(
        {
            "segment": rng.choice(["A", "B"], n),
            "age": rng.integers(20, 60, n).astype(float),
            **{c: rng.choice(list(ALLOWED_CATEGORIES[c]), n) for c in CATEGORY_WORDS},
            "var_1": rng.choice(["Cat_1", "Cat_2"], n),
            "family_size": rng.integers(1, 5, n).astype(float),
            "work_experience": rng.integers(0, 5, n).astype(float),
        }
    )
    for profile in segment_profiles(noise).values():
        assert len(profile["traits"]) == MIN_TRAITS  # nothing passes the threshold: the three largest


def test_an_over_represented_value_is_preferred() -> None:
    frame = planted()
    b = segment_profiles(frame)["B"]
    married = next(t for t in b["traits"] if t["column"] == "ever_married")
    assert married["value"] == "Yes" and married["share"] > married["overall"]


def test_no_two_segments_read_alike_on_generated_data() -> None:
    for seed in (0, 1, 2):
        profiles = segment_profiles(generate_customers(4000, labelled_share=1.0, seed=seed))
        descriptions = [p["description"] for p in profiles.values()]
        assert len(descriptions) == 4 and len(set(descriptions)) == 4
        # Not only the share at the front differs: the traits themselves do.
        bodies = [d.split(": ", 1)[1] for d in descriptions]
        assert len(set(bodies)) == 4


def test_no_two_segments_read_alike_on_the_real_data() -> None:
    real = pd.read_csv(require_file(REAL_TRAIN_CSV)).rename(columns=KAGGLE_COLUMNS)
    profiles = segment_profiles(real)
    bodies = [p["description"].split(": ", 1)[1] for p in profiles.values()]
    assert len(bodies) == 4 and len(set(bodies)) == 4
    d = profiles["D"]
    assert d["traits"][0]["effect"] >= TRAIT_THRESHOLD
    assert all(len(p["traits"]) >= MIN_TRAITS for p in profiles.values())


def test_a_segment_with_nothing_known_still_gets_a_sentence() -> None:
    frame = pd.DataFrame({"segment": ["B", "B"], **{c: [None, None] for c in PROFILE_COLUMNS}})
    b = segment_profiles(frame)["B"]
    assert b["n"] == 2 and b["traits"] == []
    assert b["description"] == "Segment B (100 % of customers)."


def test_segment_profiles_custom_column_and_missing_columns() -> None:
    frame = planted().rename(columns={"segment": "predicted"})
    assert set(segment_profiles(frame, segment_col="predicted")) == {"A", "B"}
    with pytest.raises(DataError, match="segment"):
        segment_profiles(frame)
    with pytest.raises(DataError, match="family_size"):
        segment_profiles(planted().drop(columns="family_size"))


def test_every_allowed_category_has_words() -> None:
    for column, words in CATEGORY_WORDS.items():
        assert set(words) == set(ALLOWED_CATEGORIES[column])


def test_cohens_h() -> None:
    assert cohens_h(0.5, 0.5) == 0.0
    assert cohens_h(1.0, 0.0) == pytest.approx(math.pi)
