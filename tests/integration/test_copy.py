"""COPY paths against real PostgreSQL: binary COPY in is exact, and the scoring read path types by name."""

from __future__ import annotations

import datetime as dt
import math
import struct

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation.db import connect
from segmentation.pgcopy import binary_copy_payload, copy_binary_in
from tests.helpers import db_url

pytestmark = pytest.mark.db

TABLE = """CREATE TEMP TABLE roundtrip (
    k integer, big bigint, small smallint, x double precision, r real, t timestamptz, s text, c character(1)
)"""
TEXTS = ["plain", "", None, "héllo wörld ✓", "x" * 10_000, 'quote " back\\slash', "tab\tnew\nline", "é"]
COLUMNS = ["k", "big", "small", "x", "r", "t", "s", "c"]
UTC = dt.UTC
TEXT = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")  # PostgreSQL text holds no NUL


def _roundtrip(frame: pd.DataFrame, columns: list[str] = COLUMNS) -> list[tuple]:
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(TABLE)
        assert copy_binary_in(cur, frame, "roundtrip", columns) == len(frame)
        cur.execute(f"SELECT {', '.join(columns)} FROM roundtrip ORDER BY k")
        return cur.fetchall()


def _bits(value: float | None) -> bytes | None:
    return None if value is None else struct.pack(">d", value)


def test_binary_copy_is_exact_for_nulls_extremes_and_text(fresh_db: str) -> None:
    floats = [math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308, math.pi, None, 0.1]
    frame = pd.DataFrame(
        {
            "k": range(8),
            "big": pd.array([2**63 - 1, -(2**63), 0, None, 1, -1, 2**53 + 1, 42], dtype="Int64"),
            "small": pd.array([32767, -32768, None, 0, 1, 2, 3, 4], dtype="Int16"),
            "x": floats,
            "r": [1.5, None, -2.25, 3.0e38, 0.0, 1.0, 2.0, 3.0],
            "t": pd.to_datetime(
                [
                    "1900-01-01T00:00:00.000001+00:00",
                    None,
                    "2262-04-11T23:47:16.854775+00:00",
                    "2026-11-28T10:00:00.123456+05:30",
                    "1999-12-31T23:59:59.999999+00:00",
                    "2000-01-01T00:00:00+00:00",
                    "2038-01-19T03:14:08+00:00",
                    "1970-01-01T00:00:00+00:00",
                ],
                utc=True,
                format="ISO8601",
            ),
            "s": TEXTS,
            "c": ["A", "B", None, "C", "D", "A", "B", "é"],
        }
    )
    rows = _roundtrip(frame)
    assert [r[0] for r in rows] == list(range(8))
    assert [r[1] for r in rows] == [2**63 - 1, -(2**63), 0, None, 1, -1, 2**53 + 1, 42]
    assert [r[2] for r in rows] == [32767, -32768, None, 0, 1, 2, 3, 4]
    assert [_bits(r[3]) for r in rows] == [_bits(v) for v in floats]  # bit-exact, including -0.0
    reals = [None if r[4] is None else np.float32(r[4]) for r in rows]  # stored as float4
    assert reals == [np.float32(1.5), None, np.float32(-2.25), np.float32(3.0e38), 0.0, 1.0, 2.0, 3.0]
    assert [r[5] for r in rows] == [
        dt.datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        None,
        dt.datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC),
        dt.datetime(2026, 11, 28, 4, 30, 0, 123456, tzinfo=UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2000, 1, 1, tzinfo=UTC),
        dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
        dt.datetime(1970, 1, 1, tzinfo=UTC),
    ]
    assert [r[6] for r in rows] == TEXTS
    assert [r[7] for r in rows] == ["A", "B", None, "C", "D", "A", "B", "é"]


def test_nan_and_nat_become_null(fresh_db: str) -> None:
    frame = pd.DataFrame({"k": [1, 2], "x": [np.nan, 1.0], "t": pd.to_datetime([pd.NaT, "2026-01-01"], utc=True)})
    rows = _roundtrip(frame, ["k", "x", "t"])
    assert rows == [(1, None, None), (2, 1.0, dt.datetime(2026, 1, 1, tzinfo=UTC))]


def test_an_empty_frame_writes_nothing_and_unknown_types_are_named(fresh_db: str) -> None:
    assert _roundtrip(pd.DataFrame({"k": pd.Series([], dtype="int64")}), ["k"]) == []
    with pytest.raises(ValueError, match="'jsonb' is not supported"):
        binary_copy_payload(pd.DataFrame({"j": ["{}"]}), {"j": "jsonb"})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(allow_nan=False)),
            st.one_of(st.none(), st.text(alphabet=TEXT)),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_generated_floats_and_text_round_trip_exactly(fresh_db: str, values: list[tuple]) -> None:
    frame = pd.DataFrame({"k": range(len(values)), "x": [v[0] for v in values], "s": [v[1] for v in values]})
    rows = _roundtrip(frame, ["k", "x", "s"])
    assert [_bits(r[1]) for r in rows] == [_bits(v[0]) for v in values]
    assert [r[2] for r in rows] == [v[1] for v in values]
