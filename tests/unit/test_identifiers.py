"""Identifiers that come from configuration or the command line are validated before any SQL runs."""

from __future__ import annotations

import pytest

from segmentation.db import ensure_database, valid_identifier
from segmentation.errors import ConfigError


@pytest.mark.parametrize("name", ["segmentation", "airflow", "seg_test_01", "_x"])
def test_plain_identifiers_pass(name: str) -> None:
    assert valid_identifier(name) == name


@pytest.mark.parametrize(
    "name", ["x; DROP TABLE customers; --", 'a"b', "Upper", "", "1abc", "a b", "x" * 64, "ünï", None]
)
def test_hostile_or_odd_identifiers_are_refused(name: object) -> None:
    with pytest.raises(ConfigError, match="not allowed"):
        valid_identifier(name)  # type: ignore[arg-type]


def test_a_hostile_database_name_is_refused_before_connecting() -> None:
    # The admin URL points nowhere: the name check must fail first, without any connection attempt.
    with pytest.raises(ConfigError, match="DROP TABLE"):
        ensure_database("postgresql://nobody@127.0.0.1:1/none", "x; DROP TABLE customers; --")
