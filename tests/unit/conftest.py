"""Unit-test settings: one native (OpenMP/BLAS) thread, as the pipeline's tasks use by default.

The unit tests fit many small models; on a shared machine, OpenMP threads that outnumber free cores make
HistGradientBoosting fits of a few hundred rows tens of times slower. No test here measures parallel speed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="session", autouse=True)
def one_native_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield
