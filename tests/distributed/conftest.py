"""Fixtures shared by the distributed tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import create_database, drop_database


@pytest.fixture
def metadata_db() -> Iterator[str]:
    """A new, empty database for Airflow's metadata and Celery results, dropped afterwards."""
    url = create_database("seg_celery_meta")
    try:
        yield url
    finally:
        drop_database(url)
