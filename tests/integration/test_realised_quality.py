"""Realised quality from late labels: outcomes kept by the trigger, the views against scikit-learn, the alert."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from segmentation import realised, tasks
from segmentation.columns import SEGMENT, SEGMENTS
from segmentation.data import read_kaggle_csv
from segmentation.db import connect
from segmentation.loading import load_customers, to_raw_text
from segmentation.synthetic import generate_customers
from tests import helpers
from tests.helpers import current_settings, db_url, execute, query, scalar

pytestmark = pytest.mark.db

TRAINED, LATE = 600, 400  # ids 1..600 are labelled when loaded, 601..1000 get their labels after scoring
PROBABILITIES = ["p_a", "p_b", "p_c", "p_d"]


@pytest.fixture
def fast_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")


def load(raw: pd.DataFrame, *, labelled: bool, run_id: str = "test-load") -> None:
    """Load raw rows, with their segment or with none."""
    frame = raw.copy()
    if not labelled:
        frame[SEGMENT] = None
    load_customers(frame, run_id=run_id, url=db_url())


def customers() -> pd.DataFrame:
    return to_raw_text(generate_customers(TRAINED + LATE, labelled_share=1.0, seed=7))


def scored_with_labels(ids: list[int]) -> pd.DataFrame:
    """The current scored rows of ``ids`` with their label and label time, from the source tables."""
    rows = query(
        """SELECT s.customer_id, l.segment, (l.labeled_at AT TIME ZONE 'UTC')::date, s.segment, s.model_version,
                  s.p_a, s.p_b, s.p_c, s.p_d
           FROM segmentation.customer_segments AS s JOIN segmentation.customer_labels AS l USING (customer_id)
           WHERE s.customer_id = ANY(%s) ORDER BY s.customer_id""",
        (ids,),
    )
    return pd.DataFrame(rows, columns=["customer_id", "label", "day", "segment", "model_version", *PROBABILITIES])


def expected(frame: pd.DataFrame) -> dict[str, float]:
    """scikit-learn's figures for outcomes: labels against assigned segments and their probabilities."""
    y_true, y_pred = frame["label"].str.strip(), frame["segment"].str.strip()
    return {
        "labelled": len(frame),
        "accuracy": accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, average="macro"),
        "log_loss": log_loss(y_true, frame[PROBABILITIES].to_numpy(dtype=float), labels=list(SEGMENTS)),
    }


def view_row(view: str, where: str, params: tuple) -> dict[str, float]:
    labelled, accuracy, macro_f1, loss = query(
        f"SELECT labelled, accuracy, macro_f1, log_loss FROM segmentation.{view} WHERE {where}", params
    )[0]
    return {"labelled": labelled, "accuracy": accuracy, "macro_f1": macro_f1, "log_loss": loss}


def assert_figures_equal(actual: dict[str, float], wanted: dict[str, float]) -> None:
    assert actual["labelled"] == wanted["labelled"]
    for key in ("accuracy", "macro_f1", "log_loss"):
        assert actual[key] == pytest.approx(wanted[key], rel=1e-9, abs=1e-12), key


def test_realised_quality_equals_scikit_learn_on_late_labels_only(fresh_db: str, fast_training: None) -> None:
    raw = customers()
    trained, late = raw.iloc[:TRAINED], raw.iloc[TRAINED:]
    load(trained, labelled=True)
    load(late, labelled=False)
    tasks.run_nightly("before-labels")
    # New customers, labelled before their first scoring: not late labels, whatever happens to them later.
    early = to_raw_text(generate_customers(50, labelled_share=1.0, seed=8, start_id=5001))
    load(early, labelled=False)
    load(early, labelled=True)
    assert scalar("SELECT count(*) FROM segmentation.label_outcomes") == 0  # training labels came before scoring

    load(late, labelled=True)
    late_ids = [int(i) for i in late["customer_id"]]
    outcomes = scored_with_labels(late_ids)
    assert len(outcomes) == LATE
    version = int(outcomes["model_version"].iloc[0])
    kept = query("SELECT customer_id, label, segment FROM segmentation.label_outcomes ORDER BY customer_id")
    assert [(r[0], r[1], r[2]) for r in kept] == list(outcomes[["customer_id", "label", "segment"]].itertuples(False))
    assert_figures_equal(view_row("realised_quality", "model_version = %s", (version,)), expected(outcomes))
    for day, of_day in outcomes.groupby("day"):
        actual = view_row("realised_quality_daily", "model_version = %s AND day = %s", (version, day))
        assert_figures_equal(actual, expected(of_day))
    window = query("SELECT window_start, window_end FROM segmentation.realised_quality")[0]
    assert (
        window
        == query(
            "SELECT min(labeled_at), max(labeled_at) FROM segmentation.customer_labels WHERE customer_id = ANY(%s)",
            (late_ids,),
        )[0]
    )

    # The next run scores the early customers; their labels still do not count. A corrected label replaces
    # the label but keeps the segment assigned before the first one.
    tasks.run_nightly("after-labels")
    assert scalar("SELECT count(*) FROM segmentation.label_outcomes") == LATE
    first = late_ids[0]
    assigned = scalar("SELECT segment FROM segmentation.label_outcomes WHERE customer_id = %s", (first,))
    other = next(s for s in SEGMENTS if s != outcomes["label"].iloc[0].strip())
    execute(
        "UPDATE segmentation.customer_labels SET segment = %s, labeled_at = now() WHERE customer_id = %s",
        (other, first),
    )
    assert query("SELECT label, segment FROM segmentation.label_outcomes WHERE customer_id = %s", (first,)) == [
        (other, assigned)
    ]


def test_macro_f1_counts_only_segments_in_labels_or_assignments_and_log_loss_clips(fresh_db: str) -> None:
    rng = np.random.default_rng(3)
    n = 300
    labels = rng.choice(["A", "B", "C"], n)  # no D anywhere, so macro-F1 averages three segments
    assigned = np.where(rng.random(n) < 0.6, labels, rng.choice(["A", "B", "C"], n))
    probs = rng.dirichlet(np.ones(4), n)
    probs[:5] = [0.0, 1.0, 0.0, 0.0]  # zero probability for a label: clipped, not infinite
    labels[:5] = "A"
    rows = [(i + 1, labels[i], assigned[i], *map(float, probs[i]), f"2026-01-0{1 + i % 3} 12:00+00") for i in range(n)]
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO segmentation.label_outcomes
                   (customer_id, label, segment, model_version, p_a, p_b, p_c, p_d, labeled_at, scored_at, run_id)
               VALUES (%s, %s, %s, 99, %s, %s, %s, %s, %s, '2025-12-31', 'r')""",
            rows,
        )
    frame = pd.DataFrame(rows, columns=["customer_id", "label", "segment", *PROBABILITIES, "labeled_at"])
    assert_figures_equal(view_row("realised_quality", "model_version = 99", ()), expected(frame))
    for day in (1, 2, 3):
        of_day = frame[frame["labeled_at"].str.startswith(f"2026-01-0{day}")]
        assert_figures_equal(view_row("realised_quality_daily", "day = %s", (f"2026-01-0{day}",)), expected(of_day))
    execute("UPDATE segmentation.label_outcomes SET p_a = NULL WHERE customer_id = 1")
    assert scalar("SELECT log_loss FROM segmentation.realised_quality") is None  # not over a part of the rows


def test_the_alert_fires_above_the_margin_and_min_labels_once_per_version(
    fresh_db: str, fast_training: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = customers()
    trained, late = raw.iloc[:TRAINED], raw.iloc[TRAINED:].copy()
    load(trained, labelled=True)
    load(late, labelled=False)
    tasks.run_nightly("scored")
    # Labels that all disagree with what was assigned: realised accuracy 0.
    assigned = dict(query("SELECT customer_id, segment FROM segmentation.customer_segments"))
    late[SEGMENT] = [SEGMENTS[(SEGMENTS.index(assigned[int(i)]) + 1) % 4] for i in late["customer_id"]]
    load(late, labelled=True)
    holdout = scalar("SELECT (metrics->>'accuracy')::float8 FROM segmentation.model_versions WHERE status = 'champion'")
    assert holdout > 0.3

    settings = current_settings()
    with connect(db_url()) as conn, conn.cursor() as cur:
        assert realised.check(cur, replace(settings, realised_min_labels=LATE + 1, realised_margin=0.05)) is None
        assert realised.check(cur, replace(settings, realised_min_labels=LATE, realised_margin=holdout)) is None
        due = realised.check(cur, replace(settings, realised_min_labels=LATE, realised_margin=holdout - 0.01))
    assert due is not None
    assert (due["labelled"], due["realised_accuracy"], due["holdout_accuracy"]) == (LATE, 0.0, holdout)

    monkeypatch.setenv("SEGMENTATION_REALISED_MIN_LABELS", str(LATE))
    monkeypatch.setenv("SEGMENTATION_REALISED_MARGIN", "0.05")
    tasks.run_nightly("alerting")
    tasks.run_nightly("next-night")
    raised = query("SELECT run_id, message, details FROM segmentation.alerts WHERE kind = 'realised_quality_drop'")
    assert len(raised) == 1, "once per champion version, not every night"
    run_id, message, details = raised[0]
    assert run_id == "alerting" and details["model_version"] == due["model_version"]
    assert f"{LATE} late labels" in message and "0.0%" in message and f"{holdout:.1%}" in message


def test_a_drop_within_the_margin_raises_nothing(
    fresh_db: str, fast_training: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = customers()
    load(raw.iloc[:TRAINED], labelled=True)
    load(raw.iloc[TRAINED:], labelled=False)
    tasks.run_nightly("scored")
    load(raw.iloc[TRAINED:], labelled=True)  # the true labels: realised accuracy near the holdout's
    with connect(db_url()) as conn, conn.cursor() as cur:
        figures = realised.champion_figures(cur)
    assert figures is not None and figures["labelled"] == LATE
    gap = figures["holdout_accuracy"] - figures["realised_accuracy"]
    monkeypatch.setenv("SEGMENTATION_REALISED_MIN_LABELS", str(LATE))
    monkeypatch.setenv("SEGMENTATION_REALISED_MARGIN", str(round(max(gap, 0.0) + 0.02, 4)))
    tasks.run_nightly("quiet")
    assert scalar("SELECT count(*) FROM segmentation.alerts WHERE kind = 'realised_quality_drop'") == 0


def test_real_data_late_labels_equal_scikit_learn(fresh_db: str, fast_training: None) -> None:
    raw = read_kaggle_csv(helpers.require_file(helpers.REAL_TRAIN_CSV))
    ids = pd.to_numeric(raw["customer_id"])
    trained, late = raw[ids % 2 == 0], raw[ids % 2 == 1]
    load(trained, labelled=True)
    load(late, labelled=False)
    tasks.run_nightly("real-before-labels")
    load(late, labelled=True)
    late_ids = [int(i) for i in pd.to_numeric(late["customer_id"])]
    outcomes = scored_with_labels(late_ids)
    assert scalar("SELECT count(*) FROM segmentation.label_outcomes") == len(outcomes) > 0.9 * len(late)
    version = int(outcomes["model_version"].iloc[0])
    assert_figures_equal(view_row("realised_quality", "model_version = %s", (version,)), expected(outcomes))
