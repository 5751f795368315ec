"""Unit tests for segmentation.features: the derived columns (the scikit-learn part is in test_preprocessing)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentation.errors import DataError
from segmentation.features import SPENDING_RANKS, WORKING_AGE_START, derive_features, derived_columns_sql
from tests.helpers import make_labelled


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


def test_unknown_spending_score_has_no_rank() -> None:
    out = derive_features(
        pd.DataFrame({"spending_score": ["Huge", "High"], "age": [30, 30], "work_experience": [1, 1]})
    )
    assert np.isnan(out["spending_rank"].iloc[0])
    assert out["spending_rank"].iloc[1] == SPENDING_RANKS["High"]


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
    frame = make_labelled(50, seed=3)
    first, second = derive_features(frame), derive_features(frame)
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == len(frame)
    pd.testing.assert_frame_equal(first[frame.columns], frame)


def test_derive_features_missing_column() -> None:
    with pytest.raises(DataError, match="work_experience"):
        derive_features(pd.DataFrame({"spending_score": ["Low"], "age": [30]}))


def test_derived_columns_sql_uses_the_same_constants() -> None:
    # The SQL side is checked against the pandas side on a database in tests/integration; here: the same ranks
    # and working-age start, and the table alias on every column.
    sql = derived_columns_sql("f")
    assert set(sql) == {"spending_rank", "working_years_share"}
    for label, rank in SPENDING_RANKS.items():
        assert f"WHEN '{label}' THEN {rank}" in sql["spending_rank"]
    assert sql["spending_rank"].startswith("CASE f.spending_score ")
    assert f"f.age - {WORKING_AGE_START}" in sql["working_years_share"]
    assert "f.work_experience IS NULL" in sql["working_years_share"]


def test_features_module_needs_no_scikit_learn() -> None:
    import subprocess
    import sys

    # A fresh interpreter: importing the derived columns must not import scikit-learn (tasks that only build
    # features should not pay for it).
    code = "import sys, segmentation.features; sys.exit(1 if 'sklearn' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
