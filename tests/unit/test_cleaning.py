"""Validation rules, normalisation, the reject threshold and load-time id checks (no database)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from segmentation.cleaning import REASONS, check_reject_share, validate
from segmentation.columns import ATTRIBUTE_COLUMNS
from segmentation.errors import DataError, RejectThresholdExceeded
from segmentation.loading import prepare_load, to_raw_text
from tests.helpers import REAL_NEW_CSV, REAL_TRAIN_CSV, require_file

GOOD = {
    "customer_id": "1",
    "gender": "Male",
    "ever_married": "Yes",
    "age": "40",
    "graduated": "No",
    "profession": "Artist",
    "work_experience": "2.0",
    "spending_score": "Low",
    "family_size": "3.0",
    "var_1": "Cat_6",
}


def frame(*overrides: dict) -> pd.DataFrame:
    rows = [{**GOOD, "customer_id": str(i + 1), **o} for i, o in enumerate(overrides)]
    return pd.DataFrame(rows, dtype="object")


def reasons_of(**override: object) -> list[str]:
    result = validate(frame(override))
    return [] if result.rejects.empty else list(result.rejects.loc[0, "reasons"])


def test_a_good_row_is_clean_and_typed() -> None:
    result = validate(frame({}))
    assert result.rejects.empty
    row = result.clean.iloc[0]
    assert row["customer_id"] == 1 and row["age"] == 40 and row["family_size"] == 3.0
    assert row["profession"] == "Artist"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"age": "abc"}, ["age_not_a_number"]),
        ({"age": "-5"}, ["age_out_of_range"]),
        ({"age": "0"}, ["age_out_of_range"]),
        ({"age": "300"}, ["age_out_of_range"]),
        ({"age": "40.5"}, ["age_not_whole"]),
        ({"work_experience": "lots"}, ["work_experience_not_a_number"]),
        ({"work_experience": "-1"}, ["work_experience_out_of_range"]),
        ({"age": "20", "work_experience": "25"}, ["work_experience_exceeds_age"]),
        ({"family_size": "0"}, ["family_size_out_of_range"]),
        ({"family_size": "50"}, ["family_size_out_of_range"]),
        ({"family_size": "2.5"}, ["family_size_not_whole"]),
        ({"profession": "Astronaut"}, ["profession_not_allowed"]),
        ({"var_1": "Cat_99"}, ["var_1_not_allowed"]),
        ({"gender": "x" * 10_000}, ["gender_not_allowed"]),
        ({"gender": "Männlich"}, ["gender_not_allowed"]),
        (
            {"age": "abc", "family_size": "0", "gender": "?"},
            ["age_not_a_number", "family_size_out_of_range", "gender_not_allowed"],
        ),
    ],
)
def test_each_rule_names_its_reason(override: dict, expected: list[str]) -> None:
    assert reasons_of(**override) == sorted(expected)
    assert all(reason in REASONS for reason in expected)


@pytest.mark.parametrize(
    ("column", "variant", "canonical"),
    [
        ("gender", "  male", "Male"),
        ("ever_married", "YES", "Yes"),
        ("profession", " healthcare ", "Healthcare"),
        ("spending_score", "AVERAGE", "Average"),
        ("var_1", "cat_4", "Cat_4"),
    ],
)
def test_whitespace_and_case_variants_are_normalised(column: str, variant: str, canonical: str) -> None:
    result = validate(frame({column: variant}))
    assert result.rejects.empty
    assert result.clean.loc[0, column] == canonical


@pytest.mark.parametrize("blank", ["", "   ", None, "NaN", "null"])
def test_missing_values_are_kept_as_missing_not_rejected(blank: object) -> None:
    result = validate(frame({c: blank for c in ATTRIBUTE_COLUMNS}))
    assert result.rejects.empty
    assert result.clean[list(ATTRIBUTE_COLUMNS)].isna().all(axis=None)


def test_young_customers_may_have_years_of_experience() -> None:
    assert reasons_of(age="18", work_experience="14") == []


def test_rejects_keep_the_raw_row() -> None:
    result = validate(frame({"age": "  abc "}))
    raw = json.loads(result.rejects.loc[0, "raw"])
    assert raw["age"] == "  abc " and raw["customer_id"] == "1"


def test_validate_does_not_mutate_its_input() -> None:
    raw = frame({"gender": "  male"})
    before = raw.copy()
    validate(raw)
    pd.testing.assert_frame_equal(raw, before)


def test_missing_columns_are_a_clear_error() -> None:
    with pytest.raises(DataError, match="age"):
        validate(frame({}).drop(columns=["age"]))


def test_threshold() -> None:
    rejects = validate(frame({"age": "x"}, {}, {}, {}, {})).rejects
    check_reject_share(5, rejects, 0.2)  # exactly 20 % is allowed
    with pytest.raises(RejectThresholdExceeded, match=r"1 of 4 rows \(25.0%\).*age_not_a_number=1"):
        check_reject_share(4, rejects, 0.2)


def test_prepare_load_quarantines_bad_and_repeated_ids() -> None:
    raw = frame({}, {}, {}, {}).assign(segment=["A", "b", "Z", None])
    raw.loc[0, "customer_id"] = None
    raw.loc[1, "customer_id"] = "12x"
    raw.loc[3, "customer_id"] = "3"  # repeats row 2's id; the last one wins
    rows, rejects = prepare_load(raw)
    assert rows["customer_id"].tolist() == [3]
    assert rows["segment"].isna().tolist() == [True]
    by_reason = {tuple(r) for r in rejects["reasons"]}
    assert by_reason == {("missing_id",), ("invalid_id",), ("duplicate_id_in_batch", "segment_not_allowed")}


def test_prepare_load_scrubs_nul_characters() -> None:
    rows, rejects = prepare_load(frame({"profession": "Art\x00ist"}))
    assert rejects.empty
    assert "\x00" not in rows.loc[0, "profession"]


def test_to_raw_text_keeps_missing_values_missing() -> None:
    typed = pd.DataFrame(
        {
            "customer_id": [1],
            "age": pd.array([None], dtype="Int64"),
            "work_experience": [float("nan")],
            "family_size": [2.0],
            **{c: [None] for c in ATTRIBUTE_COLUMNS if c not in ("age", "work_experience", "family_size")},
        }
    )
    raw = to_raw_text(typed)
    assert raw.loc[0, "age"] is None and raw.loc[0, "work_experience"] is None
    assert raw.loc[0, "family_size"] == "2.0"


@pytest.mark.realdata
@pytest.mark.parametrize("path", [REAL_TRAIN_CSV, REAL_NEW_CSV], ids=["train", "new"])
def test_every_real_customer_is_valid(path) -> None:
    require_file(path)
    from segmentation.data import read_kaggle_csv

    raw = read_kaggle_csv(path)
    rows, load_rejects = prepare_load(raw)
    result = validate(rows.astype({"customer_id": "string"}))
    assert load_rejects.empty
    assert result.rejects.empty, result.rejects.head().to_dict("records")
    assert len(result.clean) == len(raw)


def test_nul_characters_never_reach_the_quarantine_json() -> None:
    result = validate(frame({"age": "4\x000"}))
    assert "\\u0000" not in result.rejects.loc[0, "raw"]
    assert json.loads(result.rejects.loc[0, "raw"])["age"] == "4\ufffd0"
