"""Unit tests for segmentation.data: Kaggle CSV reading/writing and the synthetic customer generator.

The generator's figures are checked against the real training file (``../shared/data``), never against
copies of the generator's own tables: those tests are marked ``realdata`` and skip when the file is absent.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.columns import (
    ALLOWED_CATEGORIES,
    ATTRIBUTE_COLUMNS,
    CATEGORICAL_COLUMNS,
    CUSTOMER_ID,
    NUMERIC_COLUMNS,
    SEGMENT,
    SEGMENTS,
)
from segmentation.data import read_kaggle_csv, write_kaggle_csv
from segmentation.errors import DataError
from segmentation.synthetic import generate_customers
from tests.helpers import REAL_TRAIN_CSV, require_file

_HEADER_START = "ID,Gender,Ever_Married,Age,Graduated,Profession"
KAGGLE_HEADER = _HEADER_START + ",Work_Experience,Spending_Score,Family_Size,Var_1"
ROW = "462809,Male,No,22,No,Healthcare,1.0,Low,4.0,Cat_4"
ALL_COLUMNS = [CUSTOMER_ID, *ATTRIBUTE_COLUMNS, SEGMENT]

# How far the generator's 50,000 rows may be from the real file's 6,454 (absolute).
SHARE_TOLERANCE = 0.02  # share of a category (missing counted as a category) or of a segment
MISSING_TOLERANCE = 0.005  # share of missing values of a column
SEGMENT_SHARE_TOLERANCE = 0.03  # share of a category within one segment
MEAN_TOLERANCE = {"age": 1.0, "work_experience": 0.2, "family_size": 0.1}  # of the column's mean
SEGMENT_AGE_TOLERANCE = 1.5  # years, mean age within one segment


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    """50k fully labelled synthetic customers."""
    return generate_customers(50_000, labelled_share=1.0, seed=11)


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    """The real labelled customers, numbers parsed (the test is skipped when the file is absent)."""
    frame = read_kaggle_csv(require_file(REAL_TRAIN_CSV))
    return frame.astype({column: "float64" for column in NUMERIC_COLUMNS})


def _shares(values: pd.Series) -> dict[str | None, float]:
    """Share of each value, missing counted as ``None``."""
    counts = values.value_counts(normalize=True, dropna=False)
    return {None if pd.isna(k) else k: float(share) for k, share in counts.items()}


def _csv(*lines: str) -> io.StringIO:
    return io.StringIO("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------- generator


def test_generator_shape_columns_and_dtypes() -> None:
    df = generate_customers(1_000, seed=1)
    assert list(df.columns) == ALL_COLUMNS
    assert len(df) == 1_000
    assert df[CUSTOMER_ID].dtype == np.int64
    assert df["age"].dtype == "Int64"
    assert df["work_experience"].dtype == np.float64
    assert df["family_size"].dtype == np.float64
    for col in (*CATEGORICAL_COLUMNS, SEGMENT):
        values = df[col].dropna()
        assert all(isinstance(v, str) for v in values), col


def test_generator_ids_are_consecutive_from_start_id() -> None:
    df = generate_customers(500, seed=2, start_id=1_000_001)
    assert df[CUSTOMER_ID].tolist() == list(range(1_000_001, 1_000_501))
    assert generate_customers(3)[CUSTOMER_ID].tolist() == [1, 2, 3]


def test_generator_zero_rows_gives_empty_frame_with_columns() -> None:
    df = generate_customers(0)
    assert df.empty
    assert list(df.columns) == ALL_COLUMNS


def test_generator_same_seed_is_identical() -> None:
    pd.testing.assert_frame_equal(generate_customers(2_000, seed=7), generate_customers(2_000, seed=7))


def test_generator_different_seeds_differ() -> None:
    a = generate_customers(2_000, seed=7)
    b = generate_customers(2_000, seed=8)
    assert not a["age"].equals(b["age"])
    assert not a["profession"].equals(b["profession"])
    assert not a[SEGMENT].isna().equals(b[SEGMENT].isna())


@pytest.mark.realdata
@pytest.mark.parametrize("column", [*CATEGORICAL_COLUMNS, SEGMENT])
def test_generator_category_shares_match_real_data(big: pd.DataFrame, real: pd.DataFrame, column: str) -> None:
    observed, expected = _shares(big[column]), _shares(real[column])
    assert set(observed) <= set(expected), column  # no category (nor missing) the real data lacks
    for category, share in expected.items():
        assert observed.get(category, 0.0) == pytest.approx(share, abs=SHARE_TOLERANCE), (column, category)


def test_generator_categories_are_allowed(big: pd.DataFrame) -> None:
    for col, allowed in ALLOWED_CATEGORIES.items():
        assert set(big[col].dropna()) == set(allowed), col
    assert set(big[SEGMENT].dropna()) == set(SEGMENTS)


@pytest.mark.realdata
@pytest.mark.parametrize("column", ATTRIBUTE_COLUMNS)
def test_generator_missing_rates_match_real_data(big: pd.DataFrame, real: pd.DataFrame, column: str) -> None:
    observed, expected = big[column].isna().mean(), real[column].isna().mean()
    if expected == 0.0:
        assert observed == 0.0
    else:
        assert observed == pytest.approx(expected, abs=MISSING_TOLERANCE)


def test_generator_ids_are_never_missing(big: pd.DataFrame) -> None:
    assert big[CUSTOMER_ID].notna().all()


def test_generator_numbers_are_whole(big: pd.DataFrame) -> None:
    for column in NUMERIC_COLUMNS:
        values = big[column].dropna().astype("float64")
        assert (values == values.round()).all(), column


@pytest.mark.realdata
@pytest.mark.parametrize("column", NUMERIC_COLUMNS)
def test_generator_numeric_ranges_and_means_match_real_data(big: pd.DataFrame, real: pd.DataFrame, column: str) -> None:
    observed, expected = big[column].dropna().astype("float64"), real[column].dropna()
    assert (observed.min(), observed.max()) == (expected.min(), expected.max())
    assert observed.mean() == pytest.approx(expected.mean(), abs=MEAN_TOLERANCE[column])


@pytest.mark.realdata
def test_generator_work_experience_is_skewed_like_real_data(big: pd.DataFrame, real: pd.DataFrame) -> None:
    def short(frame: pd.DataFrame) -> float:  # heavily skewed to 0/1 years
        return float(frame["work_experience"].dropna().isin([0.0, 1.0]).mean())

    assert short(big) == pytest.approx(short(real), abs=SHARE_TOLERANCE)


def test_generator_work_experience_is_plausible_for_age(big: pd.DataFrame) -> None:
    known = big.dropna(subset=["work_experience"])
    age = known["age"].astype("float64")
    assert (known["work_experience"] <= age - 10).all()
    young = known[age <= 19]
    assert (young["work_experience"] >= 3).any()  # like the real data, not capped at age - 18


def test_generator_segments_have_distinct_profiles(big: pd.DataFrame) -> None:
    by_segment = big.groupby(SEGMENT)
    mean_age = by_segment["age"].mean()
    assert mean_age["D"] < 36 and mean_age["C"] > 46  # D young, C older
    assert mean_age["C"] - mean_age["D"] > 10
    healthcare = by_segment["profession"].apply(lambda s: (s == "Healthcare").mean())
    assert healthcare["D"] > 0.3 and healthcare.drop("D").max() < 0.15
    artist = by_segment["profession"].apply(lambda s: (s == "Artist").mean())
    assert artist.idxmax() == "C"
    graduated = by_segment["graduated"].apply(lambda s: (s == "Yes").mean())
    assert graduated.idxmax() == "C" and graduated.idxmin() == "D"
    low_spending = by_segment["spending_score"].apply(lambda s: (s == "Low").mean())
    assert low_spending.idxmax() == "D" and low_spending["D"] > 0.8
    # As in the real data, unmarried customers always have a Low spending score.
    assert (big.loc[big["ever_married"] == "No", "spending_score"] == "Low").all()


@pytest.mark.realdata
def test_generator_segment_profiles_match_real_data(big: pd.DataFrame, real: pd.DataFrame) -> None:
    ages = big.groupby(SEGMENT)["age"].mean().astype("float64")
    real_ages = real.groupby(SEGMENT)["age"].mean()
    for segment in SEGMENTS:
        assert ages[segment] == pytest.approx(real_ages[segment], abs=SEGMENT_AGE_TOLERANCE), segment
    for column, value in (
        ("profession", "Healthcare"),
        ("profession", "Artist"),
        ("graduated", "Yes"),
        ("ever_married", "Yes"),
        ("spending_score", "Low"),
    ):
        observed = big.groupby(SEGMENT)[column].apply(lambda s, v=value: (s == v).mean())
        expected = real.groupby(SEGMENT)[column].apply(lambda s, v=value: (s == v).mean())
        for segment in SEGMENTS:
            assert observed[segment] == pytest.approx(expected[segment], abs=SEGMENT_SHARE_TOLERANCE), (column, segment)
    # Unmarried customers always have a Low spending score, in both.
    for frame in (big, real):
        assert (frame.loc[frame["ever_married"] == "No", "spending_score"] == "Low").all()


@pytest.mark.parametrize("share", [0.0, 0.3, 0.77, 1.0])
def test_generator_labelled_share(share: float) -> None:
    df = generate_customers(1_000, labelled_share=share, seed=3)
    assert df[SEGMENT].notna().sum() == round(share * 1_000)


def test_generator_unlabelled_rows_are_spread_randomly() -> None:
    df = generate_customers(10_000, labelled_share=0.5, seed=4)
    labelled = df[SEGMENT].notna()
    assert 0.4 < labelled.iloc[:5_000].mean() < 0.6  # not just the first half


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"n_rows": -1}, "-1"),
        ({"n_rows": 2.5}, "2.5"),
        ({"n_rows": True}, "True"),
        ({"n_rows": 10, "labelled_share": -0.1}, "-0.1"),
        ({"n_rows": 10, "labelled_share": 1.5}, "1.5"),
        ({"n_rows": 10, "labelled_share": float("nan")}, "nan"),
        ({"n_rows": 10, "start_id": 1.5}, "1.5"),
        ({"n_rows": 10, "start_id": 2**63 - 5}, str(2**63 - 5)),
    ],
)
def test_generator_rejects_bad_arguments(kwargs: dict, bad: str) -> None:
    with pytest.raises(DataError, match="not allowed") as info:
        generate_customers(**kwargs)
    assert bad in str(info.value)


def test_generator_segments_are_learnable() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    df = generate_customers(20_000, labelled_share=1.0, seed=21)
    codes = {  # ordinal category codes, -1 for missing: enough for trees
        col: pd.Categorical(df[col], categories=ALLOWED_CATEGORIES[col]).codes for col in CATEGORICAL_COLUMNS
    }
    features = pd.DataFrame({**{col: df[col].astype("float64") for col in NUMERIC_COLUMNS}, **codes})
    target = df[SEGMENT].to_numpy()
    train, test = slice(0, 15_000), slice(15_000, None)
    model = HistGradientBoostingClassifier(
        max_iter=40,
        max_leaf_nodes=15,
        early_stopping=False,
        random_state=0,
    )
    model.fit(features.iloc[train], target[train])
    accuracy = model.score(features.iloc[test], target[test])
    majority = pd.Series(target[test]).value_counts(normalize=True).max()
    assert accuracy >= majority + 0.15, (accuracy, majority)
    assert accuracy < 0.8, f"segments are unrealistically easy to separate: {accuracy:.3f}"


# ------------------------------------------------------------------------------------------ read / write


def _expected_strings(df: pd.DataFrame) -> pd.DataFrame:
    """What reading back a written frame should give: every value as its CSV text, None when missing."""

    def text(value: object) -> str | None:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return None
        return str(value)

    return pd.DataFrame({col: pd.Series([text(v) for v in df[col]], dtype=object) for col in df.columns})


def test_round_trip_through_stringio() -> None:
    original = generate_customers(300, labelled_share=0.5, seed=9)
    before = original.copy()
    buffer = io.StringIO()
    write_kaggle_csv(original, buffer)
    pd.testing.assert_frame_equal(original, before)  # input not mutated

    text = buffer.getvalue()
    assert text.splitlines()[0] == KAGGLE_HEADER + ",Segmentation"
    back = read_kaggle_csv(io.StringIO(text))
    assert list(back.columns) == ALL_COLUMNS
    assert all(dtype == np.dtype(object) for dtype in back.dtypes)
    pd.testing.assert_frame_equal(back, _expected_strings(original))
    assert back["work_experience"].isna().any()  # missing values survived as None
    assert back[SEGMENT].isna().sum() == 150


def test_round_trip_through_path_without_segment(tmp_path: Path) -> None:
    original = generate_customers(50, seed=10).drop(columns=[SEGMENT])
    target = tmp_path / "customers.csv"
    write_kaggle_csv(original, target)
    assert target.read_text().splitlines()[0] == KAGGLE_HEADER
    for source in (target, str(target)):
        back = read_kaggle_csv(source)
        assert SEGMENT not in back.columns
        pd.testing.assert_frame_equal(back, _expected_strings(original))


def test_write_requires_our_columns() -> None:
    df = generate_customers(5).drop(columns=["var_1", "age"])
    with pytest.raises(DataError, match="age, var_1"):
        write_kaggle_csv(df, io.StringIO())


def test_read_keeps_raw_strings_and_turns_empty_fields_into_none() -> None:
    df = read_kaggle_csv(_csv(KAGGLE_HEADER, "007, male ,,abc,No,Healthcare, ,LOW,4.0,Cat_4"))
    row = df.iloc[0].to_dict()
    assert row["customer_id"] == "007"  # no numeric coercion
    assert row["gender"] == " male "  # neither stripped nor re-cased
    assert row["ever_married"] is None
    assert row["age"] == "abc"
    assert row["work_experience"] == " "  # only empty fields become None
    assert row["spending_score"] == "LOW"
    assert list(df.columns) == [CUSTOMER_ID, *ATTRIBUTE_COLUMNS]


def test_read_missing_header_names_it_and_lists_expected() -> None:
    header = KAGGLE_HEADER.replace(",Var_1", "").replace(",Age", "")
    with pytest.raises(DataError) as info:
        read_kaggle_csv(_csv(header, "1,Male,No,No,Artist,1.0,Low,2.0"))
    message = str(info.value)
    assert "Age" in message and "Var_1" in message
    assert KAGGLE_HEADER in message
    assert "Gender" not in message.split(";")[0]  # present headers are not reported as missing


def test_read_drops_extra_columns_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="segmentation.data"):
        df = read_kaggle_csv(_csv(KAGGLE_HEADER + ",Loyalty,Segmentation", ROW + ",gold,D"))
    assert list(df.columns) == ALL_COLUMNS
    assert df[SEGMENT].tolist() == ["D"]
    assert "gold" not in df.to_numpy()
    assert any("Loyalty" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_read_tolerates_whitespace_and_case_in_headers_and_any_order() -> None:
    start = " gender,id ,EVER_MARRIED,age,Graduated ,profession"
    header = start + ",work_experience,SPENDING_score,Family_Size,var_1"
    df = read_kaggle_csv(_csv(header, "Male,462809,No,22,No,Healthcare,1.0,Low,4.0,Cat_4"))
    assert list(df.columns) == [CUSTOMER_ID, *ATTRIBUTE_COLUMNS]
    assert df.iloc[0].tolist() == ROW.split(",")


def test_read_header_only_gives_empty_frame_with_columns() -> None:
    df = read_kaggle_csv(_csv(KAGGLE_HEADER + ",Segmentation"))
    assert df.empty and list(df.columns) == ALL_COLUMNS
    assert all(dtype == np.dtype(object) for dtype in df.dtypes)
    assert list(read_kaggle_csv(_csv(KAGGLE_HEADER)).columns) == [CUSTOMER_ID, *ATTRIBUTE_COLUMNS]


def test_read_empty_file_is_a_data_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_kaggle_csv(empty)


def test_read_from_stringio() -> None:
    df = read_kaggle_csv(io.StringIO(f"{KAGGLE_HEADER},Segmentation\n{ROW},D\n{ROW},A\n"))
    assert len(df) == 2
    assert df[SEGMENT].tolist() == ["D", "A"]
    assert df["profession"].tolist() == ["Healthcare", "Healthcare"]


def test_read_ragged_row_is_a_data_error_with_line_number() -> None:
    with pytest.raises(DataError, match="line 3"):
        read_kaggle_csv(_csv(KAGGLE_HEADER, ROW, ROW + ",extra"))


def test_read_extra_field_on_every_row_is_not_silently_lost() -> None:
    with pytest.raises(DataError, match="line 2"):
        read_kaggle_csv(_csv(KAGGLE_HEADER, ROW + ",x", ROW + ",y"))


def test_read_duplicate_header_is_a_data_error() -> None:
    with pytest.raises(DataError, match="duplicates"):
        read_kaggle_csv(_csv(KAGGLE_HEADER + ",id", ROW + ",1"))


def test_read_non_utf8_bytes_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    row = b"1,M\xe4le,No,22,No,Artist,1.0,Low,4.0,Cat_4\n"  # Latin-1 byte, not valid UTF-8
    path.write_bytes(b"\xef\xbb\xbf" + KAGGLE_HEADER.encode() + b"\n" + row)
    df = read_kaggle_csv(path)
    assert df[CUSTOMER_ID].tolist() == ["1"]  # BOM did not hide the ID header
    assert df["gender"].iloc[0] == "M\ufffdle"


def test_read_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_kaggle_csv(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.realdata
def test_read_real_training_file() -> None:
    df = read_kaggle_csv(require_file(REAL_TRAIN_CSV))
    assert len(df) == 6_454
    assert list(df.columns) == ALL_COLUMNS
    assert df[SEGMENT].notna().all()
    assert set(df[SEGMENT]) == set(SEGMENTS)
    assert df[CUSTOMER_ID].is_unique
