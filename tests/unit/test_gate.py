"""Unit tests for segmentation.gate.decide: every branch of the promotion gate, without a database."""

from __future__ import annotations

import pytest

from segmentation.gate import LOG_LOSS_TOLERANCE, GateDecision, decide

CHAMPION = {"macro_f1": 0.50, "log_loss": 1.00}
FORCED_PREFIX = "force_promote overrode the gate: "


def challenger(gain: float, log_loss: float = 1.00) -> dict[str, float]:
    return {"macro_f1": CHAMPION["macro_f1"] + gain, "log_loss": log_loss}


def test_no_champion_promotes() -> None:
    assert decide(challenger(-0.3), None, margin=0.05) == GateDecision(True, False, "no champion yet")


def test_no_champion_is_not_a_forced_promotion() -> None:
    assert decide(challenger(-0.3), None, margin=0.05, force=True) == GateDecision(True, False, "no champion yet")


def test_promoted_when_the_gain_reaches_the_margin_and_log_loss_is_within_tolerance() -> None:
    decision = decide(challenger(0.02, log_loss=1.005), CHAMPION, margin=0.01)
    assert (decision.promoted, decision.forced) == (True, False)
    assert not decision.reason.startswith(FORCED_PREFIX)


def test_refused_when_the_gain_is_below_the_margin() -> None:
    decision = decide(challenger(0.009, log_loss=0.90), CHAMPION, margin=0.01)
    assert (decision.promoted, decision.forced) == (False, False)
    assert "gain +0.0090, margin +0.0100" in decision.reason


def test_refused_when_log_loss_is_worse_than_the_tolerance_even_with_a_big_gain() -> None:
    decision = decide(challenger(0.20, log_loss=1.00 + LOG_LOSS_TOLERANCE + 0.001), CHAMPION, margin=0.01)
    assert (decision.promoted, decision.forced) == (False, False)
    assert "log loss 1.0110 vs 1.0000" in decision.reason


def test_a_negative_margin_lets_a_slightly_worse_challenger_through() -> None:
    assert decide(challenger(-0.01), CHAMPION, margin=-0.02).promoted
    assert not decide(challenger(-0.03), CHAMPION, margin=-0.02).promoted


def test_force_overrides_a_refusal() -> None:
    refused = decide(challenger(-0.10, log_loss=2.0), CHAMPION, margin=0.01)
    forced = decide(challenger(-0.10, log_loss=2.0), CHAMPION, margin=0.01, force=True)
    assert not refused.promoted
    assert (forced.promoted, forced.forced) == (True, True)
    assert forced.reason == FORCED_PREFIX + refused.reason


def test_force_with_a_challenger_that_passes_anyway_is_not_forced() -> None:
    plain = decide(challenger(0.05), CHAMPION, margin=0.01)
    forced = decide(challenger(0.05), CHAMPION, margin=0.01, force=True)
    assert forced == plain == GateDecision(True, False, plain.reason)
    assert not forced.reason.startswith(FORCED_PREFIX)


def test_gain_exactly_equal_to_the_margin_promotes() -> None:
    # 0.25 and 0.5 are exact in binary, so the gain is exactly the margin.
    champion = {"macro_f1": 0.25, "log_loss": 1.0}
    assert decide({"macro_f1": 0.5, "log_loss": 1.0}, champion, margin=0.25).promoted
    assert not decide({"macro_f1": 0.5 - 2**-40, "log_loss": 1.0}, champion, margin=0.25).promoted


def test_log_loss_exactly_at_champion_plus_tolerance_promotes() -> None:
    champion = {"macro_f1": 0.5, "log_loss": 1.0}
    assert decide({"macro_f1": 0.75, "log_loss": 1.25}, champion, margin=0.0, log_loss_tolerance=0.25).promoted
    assert not decide(
        {"macro_f1": 0.75, "log_loss": 1.25 + 2**-40}, champion, margin=0.0, log_loss_tolerance=0.25
    ).promoted
    # With the default tolerance: the sum the gate computes itself.
    at_default = {"macro_f1": 0.75, "log_loss": champion["log_loss"] + LOG_LOSS_TOLERANCE}
    assert decide(at_default, champion, margin=0.0).promoted


def test_the_reason_names_the_champion_version_and_the_rows() -> None:
    reason = decide(challenger(0.05), CHAMPION, margin=0.01, champion_version=7, rows=1234).reason
    assert "vs champion v7 0.5000 on 1234 holdout customers" in reason
    assert f"(tolerance {LOG_LOSS_TOLERANCE})" in reason
    plain = decide(challenger(0.05), CHAMPION, margin=0.01).reason
    assert "vs champion 0.5000 (gain" in plain and "holdout customers" not in plain


@pytest.mark.parametrize("force", [False, True])
def test_decisions_are_frozen(force: bool) -> None:
    decision = decide(challenger(0.0), CHAMPION, margin=0.01, force=force)
    with pytest.raises(AttributeError):
        decision.promoted = not decision.promoted  # type: ignore[misc]
