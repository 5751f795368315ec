"""Attribute buckets of the UI's distributions, as the rebuild shards compute them in pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd

from segmentation.distributions import MISSING, NUMERIC_BUCKET_ORDER, bucket_counts, bucket_labels


def test_numeric_buckets_take_their_lower_bound_and_round_family_size_half_to_even() -> None:
    ages = pd.Series([18, 24, 25, 64, 65, 90, np.nan])
    assert bucket_labels(ages, "age").tolist() == ["18-24", "18-24", "25-34", "55-64", "65+", "65+", MISSING]
    experience = pd.Series([0.0, 0.999, 1.0, 9.5, 10.0, np.nan])
    assert bucket_labels(experience, "work_experience").tolist() == ["0", "0", "1-2", "6-9", "10+", MISSING]
    family = pd.Series([1.0, 2.5, 3.5, 5.0, 6.0, 9.0, np.nan])
    assert bucket_labels(family, "family_size").tolist() == ["1", "2", "4", "5", "6+", "6+", MISSING]
    for column in ("age", "work_experience", "family_size"):
        assert set(bucket_labels(pd.Series([1.0, 30.0, np.nan]), column)) <= set(NUMERIC_BUCKET_ORDER[column])


def test_bucket_counts_count_every_customer_once_per_attribute() -> None:
    features = pd.DataFrame(
        {
            "gender": ["Male", None, "Female", "Male"],
            "ever_married": ["Yes", "No", None, "Yes"],
            "age": [30, 30, np.nan, 70],
            "graduated": ["Yes", "Yes", "No", None],
            "profession": ["Artist", "Artist", None, "Doctor"],
            "work_experience": [0.0, np.nan, 4.0, 12.0],
            "spending_score": ["Low", "High", "Low", None],
            "family_size": [2.0, 2.0, 7.0, np.nan],
            "var_1": ["Cat_6", None, "Cat_6", "Cat_4"],
        }
    )
    counts = bucket_counts(features, np.array(["A", "A", "B", "A"]))
    assert counts[("A", "age", "25-34")] == 2 and counts[("B", "age", MISSING)] == 1
    assert counts[("A", "gender", "Male")] == 2 and counts[("A", "gender", MISSING)] == 1
    assert counts[("B", "family_size", "6+")] == 1 and counts[("A", "family_size", "2")] == 2
    for attribute in ("gender", "age", "family_size", "var_1"):
        assert sum(n for (_, a, _), n in counts.items() if a == attribute) == 4
