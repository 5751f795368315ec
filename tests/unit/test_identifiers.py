"""Identifiers that come from configuration or the command line are validated before any SQL runs."""

from __future__ import annotations

import pytest

from segmentation.db import ensure_database, require_local, valid_identifier
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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://root@127.0.0.1:5432/postgres",
        "postgresql://root@localhost/postgres",
        "postgresql://root@[::1]:5432/postgres",
        "postgresql://root@/postgres?host=/tmp/pg",
    ],
)
def test_tests_and_benchmarks_accept_only_this_machine(url: str) -> None:
    assert require_local(url, "SEGMENTATION_TEST_ADMIN_URL") == url


@pytest.mark.parametrize("host", ["db.example.com", "10.0.0.5", "192.168.1.20"])
def test_a_remote_server_is_refused_for_tests_and_benchmarks(host: str) -> None:
    with pytest.raises(ConfigError, match=f"not host '{host}'"):
        require_local(f"postgresql://root:secret@{host}:5432/postgres", "SEGMENTATION_DATABASE_URL")


RULE = "the customer id must be a positive whole number (1 to 9223372036854775807)"


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("42", 42), ("007", 7), ("9223372036854775807", 2**63 - 1)])
def test_customer_ids_from_one_to_the_bigint_limit_pass(text: str, expected: int) -> None:
    from segmentation.identifiers import parse_customer_id

    assert parse_customer_id(text) == expected


@pytest.mark.parametrize(
    "text",
    ["0", "00", "-3", "+3", "1.5", "1e3", " 1", "1\n", "", None, "abc", "٣", "9223372036854775808", "9" * 20,
     "1 OR 1=1", "<script>alert(1)</script>"],
)  # fmt: skip
def test_anything_else_is_refused_with_the_rule_and_never_the_text(text: str | None) -> None:
    from segmentation.errors import DataError
    from segmentation.identifiers import parse_customer_id

    with pytest.raises(DataError) as refused:
        parse_customer_id(text)  # type: ignore[arg-type]
    assert str(refused.value) == RULE
    assert isinstance(refused.value, ValueError)
