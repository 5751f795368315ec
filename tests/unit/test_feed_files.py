"""Names of the CRM export's files: the change-id range, zero padded so that names sort as ranges do."""

from __future__ import annotations

import pytest

from segmentation.errors import DataError
from segmentation.feed import file_name, parse_name


def test_names_carry_the_range_and_sort_in_change_order() -> None:
    names = [file_name(1, 9), file_name(10, 99), file_name(100, 100), file_name(101, 10**11)]
    assert names == sorted(names)
    assert file_name(101, 250) == "segment_feed_000000000101-000000000250.csv"
    assert [parse_name(n) for n in names] == [(1, 9), (10, 99), (100, 100), (101, 10**11)]


@pytest.mark.parametrize(
    "name",
    [
        "segment_feed_1-2.csv",
        ".segment_feed_000000000001-000000000002.csv.123.tmp",
        "segment_feed_000000000001-000000000002.csv.bak",
        "other_000000000001-000000000002.csv",
    ],
)
def test_other_names_are_not_export_files(name: str) -> None:
    assert parse_name(name) is None


@pytest.mark.parametrize(("first", "last"), [(0, 5), (6, 5), (1, 10**12)])
def test_a_bad_range_is_refused_naming_it(first: int, last: int) -> None:
    with pytest.raises(DataError, match=f"{first}..{last}"):
        file_name(first, last)
