"""Unit tests for segmentation.features: derived columns, rare-category grouping and the pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from segmentation.columns import ALLOWED_CATEGORIES, MODEL_INPUT_COLUMNS, SEGMENTS
from segmentation.errors import DataError
from segmentation.features import RareCategoryGrouper, build_pipeline, build_preprocessor, derive_features

ATTRIBUTES = ("gender", "ever_married", "graduated", "profession", "spending_score", "var_1")


def make_customers(n: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic clean customers whose attributes depend on the segment, with some gaps."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, n)
    professions = ALLOWED_CATEGORIES["profession"]
    preferred = np.array([professions[0], professions[5], professions[2], professions[7]])[codes]
    profession = np.where(rng.random(n) < 0.6, preferred, rng.choice(professions, n)).astype(object)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype="int64"),
            "gender": rng.choice(["Female", "Male"], n).astype(object),
            "ever_married": np.where(rng.random(n) < 0.2 + 0.2 * codes, "Yes", "No").astype(object),
            "graduated": np.where(rng.random(n) < 0.8 - 0.2 * codes, "Yes", "No").astype(object),
            "profession": profession,
            "spending_score": np.array(["Low", "Average", "High", "Low"])[codes].astype(object),
            "var_1": rng.choice(ALLOWED_CATEGORIES["var_1"], n).astype(object),
            "age": (22 + 12 * codes + rng.normal(0, 4, n)).round().clip(18, 89),
            "work_experience": rng.integers(0, 15, n).astype(float),
            "family_size": (1 + codes + rng.integers(0, 2, n)).astype(float),
            "segment": np.array(SEGMENTS)[codes].astype(object),
        }
    )
    for column in ("ever_married", "graduated", "profession", "var_1", "work_experience", "family_size"):
        frame.loc[rng.random(n) < 0.05, column] = None
    return frame


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    return derive_features(make_customers(600, seed=1))


@pytest.fixture(scope="module")
def fitted(customers: pd.DataFrame):
    return build_pipeline(LogisticRegression(max_iter=500)).fit(customers, customers["segment"])


# --- derive_features -------------------------------------------------------------------------------


def test_derive_features_values_and_missing() -> None:
    frame = pd.DataFrame(
        {
            "spending_score": ["Low", "High", "Average", None, "Average", "High"],
            "age": [30.0, 14.0, 40.0, np.nan, 10.0, 60.0],
            "work_experience": [4.0, 3.0, np.nan, 2.0, 0.0, -2.0],
        }
    )
    before = frame.copy()
    out = derive_features(frame)
    pd.testing.assert_frame_equal(frame, before)  # input not mutated
    assert "spending_rank" not in frame.columns
    assert out["spending_rank"].tolist()[:3] == [0.0, 2.0, 1.0]
    assert np.isnan(out["spending_rank"].iloc[3])
    share = out["working_years_share"]
    assert share.iloc[0] == pytest.approx(4 / 16)
    assert share.iloc[1] == 1.0  # 3 years / max(0, 1) clipped to 1
    assert np.isnan(share.iloc[2])  # work experience missing
    assert np.isnan(share.iloc[3])  # age missing
    assert share.iloc[4] == 0.0
    assert share.iloc[5] == 0.0  # negative clipped to 0
    assert out["spending_rank"].dtype == np.float64
    assert out["working_years_share"].dtype == np.float64


def test_derive_features_handles_nullable_dtypes() -> None:
    frame = pd.DataFrame(
        {
            "spending_score": pd.array(["High", pd.NA], dtype="string"),
            "age": pd.array([34, pd.NA], dtype="Int64"),
            "work_experience": pd.array([pd.NA, 5.0], dtype="Float64"),
        }
    )
    out = derive_features(frame)
    assert out["spending_rank"].iloc[0] == 2.0
    assert out["spending_rank"].isna().iloc[1]
    assert out["working_years_share"].isna().all()


def test_derive_features_is_deterministic_and_keeps_rows() -> None:
    frame = make_customers(50, seed=3)
    first, second = derive_features(frame), derive_features(frame)
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == len(frame)
    pd.testing.assert_frame_equal(first[frame.columns], frame)


def test_derive_features_missing_column() -> None:
    with pytest.raises(DataError, match="work_experience"):
        derive_features(pd.DataFrame({"spending_score": ["Low"], "age": [30]}))


# --- RareCategoryGrouper ---------------------------------------------------------------------------


def _professions(values: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"profession": pd.Series(values, dtype=object)})


def test_grouper_learns_at_fit_and_is_not_refitted() -> None:
    train = _professions(["Artist"] * 50 + ["Doctor"] * 46 + ["Lawyer"] * 4)
    grouper = RareCategoryGrouper(min_share=0.05).fit(train)
    assert grouper.categories_ == {"profession": ["Artist", "Doctor"]}
    assert grouper.n_features_in_ == 1
    assert list(grouper.feature_names_in_) == ["profession"]
    # Lawyer dominates this batch but was rare at fit: still Other.
    out = grouper.transform(_professions(["Lawyer"] * 9 + ["Doctor"]))
    assert out[:, 0].tolist() == ["Other"] * 9 + ["Doctor"]


def test_grouper_unseen_and_missing() -> None:
    grouper = RareCategoryGrouper(min_share=0.05, other_label="Rest").fit(
        _professions(["Artist"] * 10 + ["Doctor"] * 10)
    )
    batch = pd.DataFrame({"profession": pd.array(["Astronaut", None, "Artist", pd.NA], dtype="string")})
    out = grouper.transform(batch)[:, 0]
    assert out[0] == "Rest"
    assert out[2] == "Artist"
    assert pd.isna(out[1]) and pd.isna(out[3])


def test_grouper_shares_ignore_missing_rows() -> None:
    # Engineer is 2 of 10 non-missing rows (20 %) but only 2 of 20 rows overall (10 %).
    train = _professions(["Artist"] * 8 + ["Engineer"] * 2 + [None] * 10)
    grouper = RareCategoryGrouper(min_share=0.15).fit(train)
    assert grouper.categories_["profession"] == ["Artist", "Engineer"]


def test_grouper_estimator_contract() -> None:
    grouper = RareCategoryGrouper(min_share=0.2, other_label="X")
    with pytest.raises(NotFittedError):
        grouper.transform(_professions(["Artist"]))
    grouper.fit(_professions(["Artist", "Artist", "Doctor"]))
    assert list(grouper.get_feature_names_out()) == ["profession"]
    copy = clone(grouper)
    assert copy.get_params() == {"min_share": 0.2, "other_label": "X"}
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    check_is_fitted(grouper)
    with pytest.raises(ValueError, match="min_share"):
        RareCategoryGrouper(min_share=1.5).fit(_professions(["Artist"]))


def test_grouper_numpy_input() -> None:
    grouper = RareCategoryGrouper(min_share=0.3).fit(np.array([["a"], ["a"], ["b"], ["c"]], dtype=object))
    assert grouper.categories_ == {"x0": ["a"]}
    assert grouper.transform(np.array([["b"], ["a"]], dtype=object))[:, 0].tolist() == ["Other", "a"]


# --- preprocessor and pipeline ---------------------------------------------------------------------


def test_preprocessor_selects_by_name_and_is_dense(customers: pd.DataFrame) -> None:
    pre = build_preprocessor().fit(customers)
    out = pre.transform(customers)
    assert isinstance(out, np.ndarray)
    assert out.shape[0] == len(customers)  # rows with gaps are imputed, not dropped
    assert not np.isnan(out).any()
    names = list(pre.get_feature_names_out())
    assert not any("customer_id" in n or "segment" in n for n in names)
    assert "profession__profession_Other" in names
    assert "numeric__missingindicator_work_experience" in names
    assert list(pre.feature_names_in_) == list(customers.columns)


def test_rare_professions_grouped_in_pipeline(customers: pd.DataFrame) -> None:
    pre = build_preprocessor().fit(customers)
    grouper = pre.named_transformers_["profession"].named_steps["group_rare"]
    shares = customers["profession"].dropna().value_counts(normalize=True)
    assert set(grouper.categories_["profession"]) == set(shares[shares >= 0.05].index)
    assert len(grouper.categories_["profession"]) < len(shares)


def test_pipeline_scores_rows_missing_everything_but_age(fitted) -> None:
    row = pd.DataFrame({"customer_id": [7], "age": [45.0]})
    for column in ATTRIBUTES:
        row[column] = pd.Series([None], dtype=object)
    row["work_experience"] = np.nan
    row["family_size"] = np.nan
    proba = fitted.predict_proba(derive_features(row))
    assert proba.shape == (1, 4)
    assert np.isfinite(proba).all() and proba.sum() == pytest.approx(1.0)
    assert fitted.predict(derive_features(row))[0] in SEGMENTS


def test_pipeline_ignores_column_order_and_extra_columns(fitted, customers: pd.DataFrame) -> None:
    expected = fitted.predict_proba(customers)
    shuffled = customers[list(reversed(customers.columns))].copy()
    shuffled["unrelated"] = "noise"
    np.testing.assert_array_equal(fitted.predict_proba(shuffled), expected)
    only_inputs = customers[list(MODEL_INPUT_COLUMNS)]
    np.testing.assert_array_equal(fitted.predict_proba(only_inputs), expected)


def test_pipeline_row_alone_equals_row_in_batch(fitted, customers: pd.DataFrame) -> None:
    batch = fitted.predict_proba(customers.iloc[:200])
    for position in (0, 17, 199):
        alone = fitted.predict_proba(customers.iloc[[position]])
        np.testing.assert_allclose(alone[0], batch[position], rtol=0, atol=1e-12)


def test_pipeline_accepts_string_dtype_with_pd_na(fitted, customers: pd.DataFrame) -> None:
    converted = customers.copy()
    for column in ATTRIBUTES:
        converted[column] = converted[column].astype("string")  # missing becomes pd.NA
    converted["family_size"] = converted["family_size"].astype("Float64")
    assert converted["profession"].isna().any()
    np.testing.assert_allclose(fitted.predict_proba(converted), fitted.predict_proba(customers), atol=1e-12)


def test_pipeline_learns_signal(fitted, customers: pd.DataFrame) -> None:
    holdout = derive_features(make_customers(400, seed=2))
    assert fitted.score(holdout, holdout["segment"]) > 0.6
