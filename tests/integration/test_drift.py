"""The drift check: SQL buckets (width_bucket) equal the training-time buckets, and only known input columns
from the stored data fingerprint reach SQL text."""

from __future__ import annotations

import json

import pytest

from segmentation import tasks
from segmentation.columns import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS
from segmentation.db import connect
from segmentation.errors import ModelError
from segmentation.monitoring import current_drift, reference_distributions
from segmentation.pgcopy import copy_frame_out
from tests.helpers import db_url, execute, load_generated, scalar

pytestmark = pytest.mark.db

HOSTILE = "age) FROM segmentation.customers; DROP TABLE segmentation.customers; --"


def _features_frame(cur):
    return tasks.typed_clean_frame(copy_frame_out(cur, "SELECT * FROM segmentation.customer_features"))


def test_the_same_data_has_no_drift(fresh_db: str) -> None:
    load_generated(2000, seed=3)
    tasks.clean("r1")
    tasks.build_features("r1")
    with connect(db_url()) as conn, conn.cursor() as cur:
        reference = reference_distributions(_features_frame(cur))
        drift = current_drift(cur, reference)
    assert set(drift) == {*CATEGORICAL_COLUMNS, *NUMERIC_COLUMNS}
    # Shares are stored to 6 decimals, so identical data gives a PSI of (almost exactly) zero.
    assert max(drift.values()) < 1e-4, drift
    # A shifted population does drift: everyone 30 years older.
    execute("UPDATE segmentation.customer_features SET age = LEAST(age + 30, 100)")
    with connect(db_url()) as conn, conn.cursor() as cur:
        assert current_drift(cur, reference)["age"] > 1.0


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_hostile_column_name_in_the_stored_fingerprint_is_refused(fresh_db: str, kind: str, monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_generated(800, labelled_share=0.6)
    tasks.run_nightly("n1")
    entry = {"edges": [1.0], "shares": [0.5, 0.5, 0.0]} if kind == "numeric" else {"x": 1.0}
    execute(
        """UPDATE segmentation.model_versions
           SET data_fingerprint = jsonb_set(data_fingerprint, ARRAY['distributions', %s, %s], %s::jsonb)""",
        (kind, HOSTILE, json.dumps(entry)),
    )
    with pytest.raises(ModelError, match="not an input column"):
        tasks.retrain_if_due("n2")
    assert scalar("SELECT to_regclass('segmentation.customers') IS NOT NULL") is True
    assert scalar("SELECT count(*) FROM segmentation.customers") == 800
