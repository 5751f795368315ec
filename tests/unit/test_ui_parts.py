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
    from segmentation.predict import InvalidCustomer, check_values

    with pytest.raises(InvalidCustomer) as refused:
        check_values({"age": "20", "work_experience": "25", "profession": "Astronaut", "family_size": "2.5"})
    assert {f: [e["rule"] for e in es] for f, es in refused.value.errors.items()} == {
        "work_experience": ["work_experience_exceeds_age"],
        "profession": ["profession_not_allowed"],
        "family_size": ["family_size_not_whole"],
    }
    assert "Astronaut" not in str(refused.value) and str(refused.value).startswith("invalid customer: ")
    clean = check_values({"gender": "  female", "age": None})
    assert clean.iloc[0]["gender"] == "Female"


class _FixedModel:
    """Always the same probabilities for A, B, C, D (classes stored in another order, as a pipeline may)."""

    classes_ = ("D", "C", "B", "A")

    def predict_proba(self, frame):
        return np.tile([0.1, 0.2, 0.3, 0.4], (len(frame), 1))


def test_score_customer_validates_before_loading_and_reports_segment_description_imputation_and_reasons() -> None:
    import pandas as pd

    from segmentation.columns import ATTRIBUTE_COLUMNS
    from segmentation.predict import InvalidCustomer, Scorer, score_customer

    loads: list[int] = []

    def load() -> Scorer:
        loads.append(1)
        background = pd.DataFrame([{"age": 40.0, "profession": "Artist"}], columns=list(ATTRIBUTE_COLUMNS))
        return Scorer(7, _FixedModel(), {"A": {"description": "Segment A (test)"}}, background)

    with pytest.raises(InvalidCustomer):
        score_customer({"age": "abc"}, load)
    assert loads == []  # bad input is reported before any model is loaded

    result = score_customer({"age": "38", "gender": "female", "profession": ""}, load)
    assert list(result) == ["segment", "probabilities", "model_version", "description", "imputed", "reasons", "values"]
    assert result["segment"] == "A" and result["model_version"] == 7
    assert result["probabilities"] == {"A": 0.4, "B": 0.3, "C": 0.2, "D": 0.1}
    assert result["description"] == "Segment A (test)"
    assert result["imputed"] == [c for c in ATTRIBUTE_COLUMNS if c not in ("age", "gender")]
    assert result["values"]["gender"] == "Female" and result["values"]["age"] == 38.0
    assert len(result["reasons"]) == 5 and all(r["effect"] == 0.0 for r in result["reasons"])


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
