"""Unit tests for segmentation.gate: the paired test on planted ties, clear wins and noise, and every branch of
the promotion rule, without a database."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from segmentation.columns import SEGMENTS
from segmentation.gate import LOG_LOSS_TOLERANCE, GateDecision, PairedTest, decide, paired_test

CHAMPION = {"macro_f1": 0.50, "log_loss": 1.00}
FORCED_PREFIX = "force_promote overrode the gate: "


def challenger(gain: float, log_loss: float = 1.00) -> dict[str, float]:
    return {"macro_f1": CHAMPION["macro_f1"] + gain, "log_loss": log_loss}


def significant(p_value: float = 0.001, level: float = 0.05) -> PairedTest:
    return PairedTest(
        rows=1000, resamples=2000, level=level, gain=0.05, lower=0.02, p_value=p_value,
        better=80, worse=30, mcnemar_p=0.0001, log_loss_diff=-0.01, log_loss_se=0.005,
    )  # fmt: skip


def planted(rows: int, right_a: float, right_b: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Labels and two models' predictions: each model right on about the given share of rows, independently."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(list(SEGMENTS), size=rows)

    def predictions(share: float) -> np.ndarray:
        wrong = rng.choice(list(SEGMENTS), size=rows)
        return np.where(rng.random(rows) < share, truth, wrong)

    return truth, predictions(right_a), predictions(right_b)


def losses(rows: int, value: float) -> np.ndarray:
    return np.full(rows, value)


def test_identical_predictions_are_a_tie_with_p_one() -> None:
    truth, a, _ = planted(2000, 0.6, 0.6)
    test = paired_test(truth, a, a.copy(), losses(2000, 1.0), losses(2000, 1.0))
    assert test.gain == 0.0
    assert test.p_value == 1.0
    assert (test.better, test.worse, test.mcnemar_p) == (0, 0, 1.0)
    assert test.log_loss_diff == 0.0


def test_a_planted_tie_never_promotes_even_with_margin_zero() -> None:
    truth, a, _ = planted(2000, 0.6, 0.6)
    test = paired_test(truth, a, a.copy(), losses(2000, 1.0), losses(2000, 1.0))
    metrics = {"macro_f1": 0.6, "log_loss": 1.0}
    decision = decide(metrics, dict(metrics), margin=0.0, paired=test)
    assert (decision.promoted, decision.forced) == (False, False)
    assert "tie: never promoted without force" in decision.reason
    assert "p = 1.0000" in decision.reason
    forced = decide(metrics, dict(metrics), margin=0.0, paired=test, force=True)
    assert (forced.promoted, forced.forced) == (True, True)


def test_a_clear_win_is_beyond_the_noise() -> None:
    truth, a, b = planted(3000, 0.75, 0.55, seed=1)
    test = paired_test(truth, a, b, losses(3000, 0.8), losses(3000, 1.0), level=0.05, resamples=2000)
    assert test.gain > 0.1
    assert test.p_value < 0.01 and test.lower > 0
    assert test.mcnemar_p < 1e-6 and test.better > test.worse
    assert test.log_loss_diff == pytest.approx(-0.2)
    gain = f1_score(truth, a, average="macro") - f1_score(truth, b, average="macro")
    decision = decide(
        {"macro_f1": 0.5 + gain, "log_loss": 0.8}, {"macro_f1": 0.5, "log_loss": 1.0}, margin=0.0, paired=test
    )
    assert decision.promoted and not decision.forced
    assert "beyond the noise" in decision.reason
    assert f"p = {test.p_value:.4f} (level 0.05)" in decision.reason
    assert f"{test.better} customers only the challenger gets right" in decision.reason


def test_the_observed_gain_equals_scikit_learns_macro_f1_difference() -> None:
    truth, a, b = planted(500, 0.7, 0.5, seed=3)
    test = paired_test(truth, a, b, losses(500, 1.0), losses(500, 1.0))
    expected = f1_score(truth, a, average="macro") - f1_score(truth, b, average="macro")
    assert test.gain == pytest.approx(expected, abs=1e-12)


def test_a_gain_inside_the_noise_of_a_small_holdout_is_refused() -> None:
    # Two equally good models differ on a few customers by chance: a small positive gain, not significant.
    truth, a, _ = planted(200, 0.6, 0.6, seed=4)
    b = a.copy()
    flip = np.flatnonzero(a != truth)[:2]
    b[flip[:1]] = truth[flip[:1]]  # the champion is right on one customer the challenger gets wrong ...
    right = np.flatnonzero(a == truth)[:2]
    b[right] = np.where(truth[right] == "A", "B", "A")  # ... and wrong on two the challenger gets right
    test = paired_test(truth, a, b, losses(200, 1.0), losses(200, 1.0))
    assert test.gain > 0
    assert test.p_value > 0.05
    decision = decide({"macro_f1": 0.6, "log_loss": 1.0}, {"macro_f1": 0.59, "log_loss": 1.0}, margin=0.0,
                      paired=test)  # fmt: skip
    assert not decision.promoted and "within the noise" in decision.reason


def test_the_bootstrap_is_reproducible_with_its_seed() -> None:
    truth, a, b = planted(800, 0.62, 0.6, seed=5)
    args = (truth, a, b, losses(800, 1.0), losses(800, 1.0))
    assert paired_test(*args, seed=7) == paired_test(*args, seed=7)


def test_no_champion_promotes() -> None:
    assert decide(challenger(-0.3), None, margin=0.05) == GateDecision(True, False, "no champion yet")


def test_no_champion_is_not_a_forced_promotion() -> None:
    assert decide(challenger(-0.3), None, margin=0.05, force=True) == GateDecision(True, False, "no champion yet")


def test_without_a_paired_test_nothing_is_promoted() -> None:
    decision = decide(challenger(0.2), CHAMPION, margin=0.0)
    assert not decision.promoted and "no paired test" in decision.reason


def test_promoted_when_significant_the_gain_reaches_the_margin_and_log_loss_is_within_tolerance() -> None:
    decision = decide(challenger(0.02, log_loss=1.005), CHAMPION, margin=0.01, paired=significant())
    assert (decision.promoted, decision.forced) == (True, False)
    assert not decision.reason.startswith(FORCED_PREFIX)


def test_refused_when_the_p_value_is_not_below_the_level() -> None:
    assert not decide(challenger(0.05), CHAMPION, margin=0.0, paired=significant(p_value=0.05)).promoted
    assert decide(challenger(0.05), CHAMPION, margin=0.0, paired=significant(p_value=0.049)).promoted
    assert decide(challenger(0.05), CHAMPION, margin=0.0, paired=significant(p_value=0.09, level=0.1)).promoted


def test_refused_when_the_gain_is_below_the_margin() -> None:
    decision = decide(challenger(0.009, log_loss=0.90), CHAMPION, margin=0.01, paired=significant())
    assert (decision.promoted, decision.forced) == (False, False)
    assert "gain +0.0090, margin +0.0100" in decision.reason


def test_refused_when_log_loss_is_worse_than_the_tolerance_even_with_a_big_gain() -> None:
    decision = decide(
        challenger(0.20, log_loss=1.00 + LOG_LOSS_TOLERANCE + 0.001), CHAMPION, margin=0.01, paired=significant()
    )
    assert (decision.promoted, decision.forced) == (False, False)
    assert "log loss 1.0110 vs 1.0000" in decision.reason


def test_a_negative_margin_never_lets_a_worse_challenger_through() -> None:
    # The paired test would not call a loss significant; even when told so, the gain must be positive.
    assert not decide(challenger(-0.01), CHAMPION, margin=-0.02, paired=significant()).promoted


def test_force_overrides_a_refusal() -> None:
    refused = decide(challenger(-0.10, log_loss=2.0), CHAMPION, margin=0.01, paired=significant(p_value=0.9))
    forced = decide(challenger(-0.10, log_loss=2.0), CHAMPION, margin=0.01, paired=significant(p_value=0.9), force=True)
    assert not refused.promoted
    assert (forced.promoted, forced.forced) == (True, True)
    assert forced.reason == FORCED_PREFIX + refused.reason


def test_force_with_a_challenger_that_passes_anyway_is_not_forced() -> None:
    plain = decide(challenger(0.05), CHAMPION, margin=0.01, paired=significant())
    forced = decide(challenger(0.05), CHAMPION, margin=0.01, paired=significant(), force=True)
    assert forced == plain == GateDecision(True, False, plain.reason)
    assert not forced.reason.startswith(FORCED_PREFIX)


def test_gain_exactly_equal_to_the_margin_promotes() -> None:
    # 0.25 and 0.5 are exact in binary, so the gain is exactly the margin.
    champion = {"macro_f1": 0.25, "log_loss": 1.0}
    assert decide({"macro_f1": 0.5, "log_loss": 1.0}, champion, margin=0.25, paired=significant()).promoted
    assert not decide({"macro_f1": 0.5 - 2**-40, "log_loss": 1.0}, champion, margin=0.25, paired=significant()).promoted


def test_log_loss_exactly_at_champion_plus_tolerance_promotes() -> None:
    champion = {"macro_f1": 0.5, "log_loss": 1.0}
    ok = {"macro_f1": 0.75, "log_loss": 1.25}
    assert decide(ok, champion, margin=0.0, log_loss_tolerance=0.25, paired=significant()).promoted
    worse = {"macro_f1": 0.75, "log_loss": 1.25 + 2**-40}
    assert not decide(worse, champion, margin=0.0, log_loss_tolerance=0.25, paired=significant()).promoted
    # With the default tolerance: the sum the gate computes itself.
    at_default = {"macro_f1": 0.75, "log_loss": champion["log_loss"] + LOG_LOSS_TOLERANCE}
    assert decide(at_default, champion, margin=0.0, paired=significant()).promoted


def test_the_reason_names_the_champion_version_the_rows_and_the_test() -> None:
    reason = decide(challenger(0.05), CHAMPION, margin=0.01, champion_version=7, rows=1234,
                    paired=significant()).reason  # fmt: skip
    assert "vs champion v7 0.5000 on 1234 holdout customers" in reason
    assert f"(tolerance {LOG_LOSS_TOLERANCE})" in reason
    assert "paired bootstrap of the macro-F1 gain (2000 resamples of the 1000 customers)" in reason
    assert "McNemar on correctness: 80 customers only the challenger gets right, 30 only the champion" in reason
    plain = decide(challenger(0.05), CHAMPION, margin=0.01, paired=significant()).reason
    assert "vs champion 0.5000 (gain" in plain and "holdout customers" not in plain


@pytest.mark.parametrize("force", [False, True])
def test_decisions_are_frozen(force: bool) -> None:
    decision = decide(challenger(0.0), CHAMPION, margin=0.01, force=force, paired=significant())
    with pytest.raises(AttributeError):
        decision.promoted = not decision.promoted  # type: ignore[misc]
