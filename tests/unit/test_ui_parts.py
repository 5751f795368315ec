"""Pure parts of the Segmentation UI and the figures it reads: reliability bins, field errors by rule, step
summaries and chart data (no database, no Airflow)."""

from __future__ import annotations

import numpy as np
import pytest

from segmentation.metrics import reliability_bins


def test_reliability_bins_count_every_row_and_match_a_perfectly_calibrated_model() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(20_000)
    proba = np.column_stack([p, 1 - p])
    truth = np.where(rng.random(20_000) < p, "A", "B")
    bins = reliability_bins(truth, proba, ["A", "B"])
    assert sum(bins["A"]["rows"]) == sum(bins["B"]["rows"]) == 20_000
    # Outcomes drawn with the predicted probability: observed frequency tracks the predicted one.
    assert np.allclose(bins["A"]["predicted"], bins["A"]["observed"], atol=0.05)
    wrong = reliability_bins(np.where(truth == "A", "B", "A"), proba, ["A", "B"])
    assert not np.allclose(wrong["A"]["predicted"], wrong["A"]["observed"], atol=0.3)


def test_check_maps_every_broken_rule_to_its_field_and_keeps_valid_rows() -> None:
    from segmentation.ui.champion import check

    clean, errors = check({"age": "20", "work_experience": "25", "profession": "Astronaut", "family_size": "2.5"})
    assert clean is None
    assert {f: [e["rule"] for e in es] for f, es in errors.items()} == {
        "work_experience": ["work_experience_exceeds_age"],
        "profession": ["profession_not_allowed"],
        "family_size": ["family_size_not_whole"],
    }
    clean, errors = check({"gender": "  female", "age": None})
    assert errors == {} and clean.iloc[0]["gender"] == "Female"


def test_steps_summary_sums_the_score_shards() -> None:
    from segmentation.ui.queries import summarise_steps

    steps = {
        "finalise": {"seconds": 0.5},
        "score_shard_1": {"rows": 10, "seconds": 1.0},
        "clean": {"rows": 25, "seconds": 2.0, "reasons": {"x": 1}},
        "score_shard_0": {"rows": 15, "seconds": 1.5},
    }
    rows = summarise_steps(steps)
    assert [r["step"] for r in rows] == ["clean", "score", "finalise"]
    assert rows[1] == {"step": "score", "rows": 25, "seconds": 2.5, "parts": 2}


def test_distribution_charts_are_shares_per_segment_and_for_everyone() -> None:
    from segmentation.ui.charts import attribute_distributions

    dist = {
        "gender": {"A": {"Female": 30, "Male": 10}, "B": {"Female": 10, "Male": 50}},
        "age": {"A": {"65+": 5, "18-24": 35}, "B": {"(missing)": 60}},
    }
    charts = {c["title"]: c for c in attribute_distributions(dist)}
    assert charts["age"]["labels"] == ["18-24", "65+", "(missing)"]  # the bucket order, not alphabetical
    gender = {d["label"]: d["data"] for d in charts["gender"]["datasets"]}
    assert gender == {"A": [75.0, 25.0], "B": [pytest.approx(16.67), pytest.approx(83.33)],
                      "all customers": [40.0, 60.0]}  # fmt: skip
