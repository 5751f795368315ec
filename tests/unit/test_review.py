"""Approval before promotion: the reviewer's body, what an answer means, and the two settings."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from segmentation import review
from segmentation.config import get_settings
from segmentation.dag_defaults import review_args
from segmentation.errors import ConfigError, DataError

CHALLENGER = {"accuracy": 0.52, "macro_f1": 0.50, "log_loss": 1.10, "ece_mean": 0.030}
CHAMPION = {"accuracy": 0.50, "macro_f1": 0.51, "log_loss": 1.20, "ece_mean": 0.025}


def trait(column: str, value: str, effect: float, text: str) -> dict:
    return {"column": column, "value": value, "effect": effect, "text": text}


def test_metrics_table_compares_both_models_and_says_which_way_is_better() -> None:
    table = review.metrics_table(CHALLENGER, CHAMPION)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == {"Accuracy", "Macro-F1", "Log loss", "Calibration error (mean ECE)"}
    assert "| 0.5200 | 0.5000 | +0.0200 (better) |" in rows["Accuracy"]
    assert "-0.0100 (worse)" in rows["Macro-F1"]
    assert "-0.1000 (better)" in rows["Log loss"]  # lower log loss is better
    assert "+0.0050 (worse)" in rows["Calibration error (mean ECE)"]  # higher ECE is worse
    assert "| – | – |" in review.metrics_table(CHALLENGER, None).splitlines()[2]


def test_share_moves_are_per_segment_in_points_and_count_switches() -> None:
    index = pd.Index([10, 11, 12, 13], name="customer_id")
    current = pd.Series(["A", "A", "B", "C"], index=index)
    proposed = pd.Series(["A", "B", "B", "D"], index=index)
    moves = review.share_moves(current, proposed)
    assert list(moves.index) == ["A", "B", "C", "D"]
    assert moves["current"].tolist() == [0.5, 0.25, 0.25, 0.0]
    assert moves["challenger"].tolist() == [0.25, 0.5, 0.0, 0.25]
    assert moves["points"].round(6).tolist() == [-25.0, 25.0, -25.0, 25.0]
    assert moves.attrs == {"switched": 2, "customers": 4}
    assert "| A | 50.0 % | 25.0 % | -25.0 points |" in review.shares_table(moves)
    assert current.tolist() == ["A", "A", "B", "C"]  # inputs untouched


def test_share_moves_need_the_same_customers() -> None:
    with pytest.raises(DataError, match="same customers"):
        review.share_moves(pd.Series(["A"], index=[1]), pd.Series(["A"], index=[2]))


def test_profile_changes_rank_gains_losses_and_changed_values_by_effect() -> None:
    old = {
        "A": {"traits": [trait("age", "30", -0.9, "younger: median age 30"), trait("gender", "Male", 0.2, "men")]},
        "B": {"traits": [trait("profession", "Artist", 0.5, "artists")]},
    }
    new = {
        "A": {"traits": [trait("age", "30", -0.8, "younger: median age 30")]},  # same value: no change
        "B": {"traits": [trait("profession", "Doctor", 0.4, "doctors"), trait("graduated", "Yes", 0.3, "grads")]},
    }
    changes = review.profile_changes(old, new)
    assert changes == ["Segment B: artists → doctors", "Segment B gains: grads", "Segment A loses: men"]
    assert review.profile_changes(old, new, top=1) == ["Segment B: artists → doctors"]
    assert review.profile_changes(None, {"C": {"traits": [trait("age", "50", 0.5, "older")]}}) == [
        "Segment C gains: older"
    ]


def test_the_body_holds_metrics_shares_and_description_changes() -> None:
    moves = review.share_moves(pd.Series(["A", "B"]), pd.Series(["A", "A"]))
    body = review.review_body(
        version=7,
        champion_version=3,
        reason="force_promote overrode the gate: macro-F1 ...",
        challenger=CHALLENGER,
        champion=CHAMPION,
        moves=moves,
        changes=["Segment B gains: grads"],
        holdout_rows=321,
    )
    assert "**Model version 7** against champion v3" in body and "321 stable-holdout customers" in body
    assert "force_promote overrode the gate" in body
    assert review.metrics_table(CHALLENGER, CHAMPION) in body
    assert review.shares_table(moves) in body and "1 of them would change segment" in body
    assert "- Segment B gains: grads" in body
    bare = review.review_body(
        version=1, champion_version=None, reason="no champion yet", challenger=CHALLENGER, champion=None,
        moves=None, changes=[], holdout_rows=10,
    )  # fmt: skip
    assert "no champion yet" in bare and "Segment shares" not in bare and "No trait of any segment changes" in bare


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            {"chosen_options": ["Approve"], "responded_by_user": {"id": "7", "name": "ana"},
             "params_input": {"comment": " fine "}},
            review.Decision(approved=True, reviewer="ana", comment="fine"),
        ),
        (
            {"chosen_options": ["Reject"], "responded_by_user": {"id": "8", "name": ""}, "params_input": {}},
            review.Decision(approved=False, reviewer="8", comment=""),
        ),
        (
            {"chosen_options": ["Reject"], "responded_by_user": None, "params_input": {"comment": ""}},
            review.Decision(approved=False, reviewer="timeout", comment=""),
        ),
    ],
)  # fmt: skip
def test_decision_of_a_hitl_response(response: dict, expected: review.Decision) -> None:
    assert review.decision_of(response) == expected


@pytest.mark.parametrize("chosen", [[], ["Approve", "Reject"], ["Maybe"]])
def test_a_response_without_exactly_one_known_option_is_refused(chosen: list[str]) -> None:
    with pytest.raises(DataError, match="exactly one of"):
        review.decision_of({"chosen_options": chosen, "responded_by_user": {"name": "ana"}})


def test_approval_settings_default_to_off_and_72_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGMENTATION_PROMOTION_APPROVAL", raising=False)
    monkeypatch.delenv("SEGMENTATION_APPROVAL_TIMEOUT_HOURS", raising=False)
    settings = get_settings()
    assert (settings.promotion_approval, settings.approval_timeout_hours) == ("off", 72.0)
    assert review_args(settings) is None  # no approval task
    monkeypatch.setenv("SEGMENTATION_PROMOTION_APPROVAL", "required")
    monkeypatch.setenv("SEGMENTATION_APPROVAL_TIMEOUT_HOURS", "0.5")
    assert review_args(get_settings()) == {"response_timeout": timedelta(minutes=30), "defaults": ["Reject"]}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SEGMENTATION_PROMOTION_APPROVAL", "yes"),
        ("SEGMENTATION_APPROVAL_TIMEOUT_HOURS", "0"),
        ("SEGMENTATION_APPROVAL_TIMEOUT_HOURS", "721"),
        ("SEGMENTATION_APPROVAL_TIMEOUT_HOURS", "soon"),
    ],
)
def test_bad_approval_settings_are_config_errors_naming_them(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        get_settings()
