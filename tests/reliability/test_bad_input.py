"""Hostile and broken input planted in ``customers`` (or in a CSV): quarantined with a precise reason, or
normalised when harmless; never a crash, never a lost row."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation import tasks
from segmentation.cleaning import validate
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID
from segmentation.data import read_kaggle_csv, write_kaggle_csv
from segmentation.errors import DataError, RejectThresholdExceeded
from segmentation.loading import load_customers, prepare_load, to_raw_text
from segmentation.synthetic import generate_customers
from tests.helpers import db_url, query, scalar

pytestmark = pytest.mark.db

# (column overrides, expected reasons, or None when the row must be normalised and stay clean)
CASES = {
    "text_in_age": ({"age": "forty"}, ["age_not_a_number"]),
    "text_in_family_size": ({"family_size": "many"}, ["family_size_not_a_number"]),
    "negative_age": ({"age": "-5"}, ["age_out_of_range"]),
    "zero_age": ({"age": "0"}, ["age_out_of_range"]),
    "absurd_age": ({"age": "300"}, ["age_out_of_range"]),
    "experience_over_age": ({"age": "30", "work_experience": "31"}, ["work_experience_exceeds_age"]),
    "family_size_zero": ({"family_size": "0"}, ["family_size_out_of_range"]),
    "family_size_fifty": ({"family_size": "50"}, ["family_size_out_of_range"]),
    "unknown_profession": ({"profession": "Astronaut"}, ["profession_not_allowed"]),
    "unknown_category": ({"var_1": "Cat_42"}, ["var_1_not_allowed"]),
    "non_ascii": ({"profession": "Ingénieur ✓"}, ["profession_not_allowed"]),
    "ten_kb_string": ({"gender": "M" * 10_240}, ["gender_not_allowed"]),
    "whitespace_and_case": ({"gender": "  male", "ever_married": "YES", "spending_score": " low "}, None),
    "empty_strings": ({"profession": "", "graduated": "   ", "work_experience": ""}, None),
}


def _planted_batch() -> tuple[dict[int, list[str] | None], object]:
    rows = to_raw_text(generate_customers(200, seed=8, labelled_share=0.0))
    expected: dict[int, list[str] | None] = {}
    for i, (overrides, reasons) in enumerate(CASES.values()):
        for column, value in overrides.items():
            rows.loc[i, column] = value
        expected[int(rows.loc[i, "customer_id"])] = reasons
    return expected, rows


def test_each_kind_of_bad_input_is_quarantined_or_normalised(fresh_db: str) -> None:
    expected, rows = _planted_batch()
    load_customers(rows, run_id="planted", url=db_url())
    figures = tasks.clean("planted")
    rejects = dict(query("SELECT customer_id, reasons FROM segmentation.customer_rejects"))
    for customer_id, reasons in expected.items():
        if reasons is None:
            assert customer_id not in rejects
        else:
            assert rejects[customer_id] == reasons, customer_id
    clean = dict(query("SELECT customer_id, gender FROM segmentation.clean_customers"))
    assert clean[int(rows.loc[12, "customer_id"])] == "Male"
    # Nothing lost: every row is clean or quarantined.
    assert figures["clean"] + figures["rejected"] == 200 == len(clean) + len(rejects)
    long_raw = scalar(
        "SELECT raw->>'gender' FROM segmentation.customer_rejects WHERE %s = ANY(reasons)", ("gender_not_allowed",)
    )
    assert len(long_raw) == 10_240


def test_null_and_duplicate_ids_in_one_load_are_quarantined(fresh_db: str) -> None:
    text = (
        "ID,Gender,Ever_Married,Age,Graduated,Profession,Work_Experience,Spending_Score,Family_Size,Var_1\n"
        ",Male,Yes,40,Yes,Artist,1,Low,2,Cat_6\n"
        "abc,Male,Yes,40,Yes,Artist,1,Low,2,Cat_6\n"
        "7,Male,Yes,40,Yes,Artist,1,Low,2,Cat_6\n"
        "7,Female,No,41,No,Doctor,2,High,3,Cat_4\n"
    )
    result = load_customers(read_kaggle_csv(io.StringIO(text)), run_id="ids", url=db_url())
    assert (result.inserted, result.rejected) == (1, 3)
    assert query("SELECT customer_id, gender FROM segmentation.customers") == [(7, "Female")]
    reasons = sorted(r[0][0] for r in query("SELECT reasons FROM segmentation.customer_rejects"))
    assert reasons == ["duplicate_id_in_batch", "invalid_id", "missing_id"]


def test_an_empty_table_is_a_quiet_successful_run(fresh_db: str, monkeypatch) -> None:
    figures = tasks.clean("empty")
    assert (figures["rows"], figures["clean"], figures["rejected"]) == (0, 0, 0)
    assert tasks.build_features("empty")["rows"] == 0


def test_a_batch_that_is_all_bad_fails_and_writes_nothing(fresh_db: str) -> None:
    rows = to_raw_text(generate_customers(40, seed=9)).assign(age="not a number")
    load_customers(rows, run_id="all-bad", url=db_url())
    with pytest.raises(RejectThresholdExceeded, match=r"40 of 40 rows \(100.0%\)"):
        tasks.clean("all-bad")
    for table in ("clean_customers", "customer_features", "customer_rejects", "customer_segments"):
        assert scalar(f"SELECT count(*) FROM segmentation.{table}") == 0, table


CELL = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.sampled_from(["Male", " yes ", "Cat_6", "Artist", "Low", "HIGH", "1e9", "-0", "NaN", "inf", "3.0", "\x00"]),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
COLUMNS = [CUSTOMER_ID, *ATTRIBUTE_COLUMNS]
ROWS = st.lists(st.fixed_dictionaries({c: CELL for c in COLUMNS}), min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(rows=ROWS)
def test_fuzzed_rows_are_either_clean_or_quarantined(rows: list[dict]) -> None:
    import pandas as pd

    raw = pd.DataFrame(rows, columns=COLUMNS, dtype="object")
    loadable, load_rejects = prepare_load(raw)
    id_reasons = {"missing_id", "invalid_id", "duplicate_id_in_batch"}
    id_rejected = int(load_rejects["reasons"].map(lambda r: bool(id_reasons & set(r))).sum())
    assert len(loadable) + id_rejected == len(raw)
    result = validate(loadable.astype({"customer_id": "string"}))
    assert len(result.clean) + len(result.rejects) == len(loadable)
    assert all(result.rejects["reasons"].map(len) > 0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS)
def test_fuzzed_csv_files_load_and_clean_without_crashing(fresh_db: str, rows: list[dict], tmp_path_factory) -> None:
    import pandas as pd

    from segmentation.db import connect

    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(
            "TRUNCATE segmentation.customers, segmentation.customer_rejects, segmentation.clean_customers, "
            "segmentation.customer_labels"
        )
    path = tmp_path_factory.mktemp("fuzz") / "customers.csv"
    frame = pd.DataFrame(rows, columns=COLUMNS, dtype="object")
    write_kaggle_csv(frame, path)
    try:
        raw = read_kaggle_csv(path)
    except DataError:
        return  # a clear error about the file is an allowed outcome
    loaded = load_customers(raw, run_id="fuzz", url=db_url())
    try:
        figures = tasks.clean("fuzz")
    except RejectThresholdExceeded:
        assert scalar("SELECT count(*) FROM segmentation.clean_customers") == 0
        return
    in_table = scalar("SELECT count(*) FROM segmentation.customers")
    assert in_table == loaded.inserted
    assert figures["clean"] + figures["rejected"] == in_table
