"""Unit tests for segmentation.jsonsafe: plain JSON values for the registry's jsonb columns."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd

from segmentation.jsonsafe import json_safe


def test_json_safe() -> None:
    value = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": [np.nan, np.inf, 1.0],
        "d": np.array([1, 2]),
        "e": (np.bool_(True), None, pd.NA),
        1: "x",
    }
    safe = json_safe(value)
    assert safe == {"a": 0.5, "b": 3, "c": [None, None, 1.0], "d": [1, 2], "e": [True, None, None], "1": "x"}
    assert type(safe["b"]) is int and type(safe["a"]) is float
    assert type(safe["e"][0]) is bool
    json.dumps(safe, allow_nan=False)


def test_json_safe_sets_series_and_other_objects() -> None:
    assert json_safe({"b", "a"}) == ["a", "b"]  # sets sorted, so equal inputs give equal JSON
    assert json_safe(pd.Series([1.5, np.nan])) == [1.5, None]
    assert json_safe(pd.NaT) is None
    assert json_safe(date(2024, 1, 2)) == "2024-01-02"
    assert json_safe({"nested": {"x": np.float64(-np.inf)}}) == {"nested": {"x": None}}
