"""The promotion gate: whether a challenger replaces the champion, decided from both models' predictions on the
same holdout customers, with a paired test so that a gain inside the holdout's noise (or a tie) never promotes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from segmentation.columns import SEGMENTS

# How much worse a challenger's log loss may be than the champion's: probabilities are published too, so a
# challenger may not buy macro-F1 with much worse probabilities.
LOG_LOSS_TOLERANCE = 0.01
DEFAULT_LEVEL = 0.05
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class GateDecision:
    """The outcome: ``forced`` is True only when ``force`` overrode a refusal."""

    promoted: bool
    forced: bool
    reason: str


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of two models on the same customers.

    ``gain`` is the challenger's macro-F1 minus the champion's; ``p_value`` the one-sided paired-bootstrap
    p-value of "the challenger is no better" (the share of resamples with no gain, add-one smoothed), ``lower``
    the bootstrap's one-sided lower bound of the gain at the test's level. McNemar's exact test on
    correctness (``better``: rows only the challenger gets right, ``worse``: the reverse) and the paired
    log-loss difference with its standard error are reported beside it.
    """

    rows: int
    resamples: int
    level: float
    gain: float
    lower: float
    p_value: float
    better: int
    worse: int
    mcnemar_p: float
    log_loss_diff: float
    log_loss_se: float

    def words(self) -> str:
        """The test's figures in one line, for the decision's reason."""
        return (
            f"paired bootstrap of the macro-F1 gain ({self.resamples} resamples of the {self.rows} customers): "
            f"p = {self.p_value:.4f} (level {self.level:g}), one-sided {1 - self.level:.0%} lower bound "
            f"{self.lower:+.4f}; McNemar on correctness: {self.better} customers only the challenger gets right, "
            f"{self.worse} only the champion, p = {self.mcnemar_p:.4f}; log-loss difference "
            f"{self.log_loss_diff:+.4f} (standard error {self.log_loss_se:.4f})"
        )


def _macro_f1(confusion: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Macro-F1 of stacked confusion matrices (``[..., truth, predicted]``) over the label positions ``labels``,
    0 for a label with no true and no predicted row (scikit-learn's ``zero_division=0``)."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)  # 2 TP + FP + FN
    f1 = np.divide(2 * tp, denominator, out=np.zeros(denominator.shape), where=denominator > 0)
    return f1[..., labels].mean(axis=-1)


def _mcnemar_p(better: int, worse: int) -> float:
    """One-sided exact McNemar p-value: the chance of at least ``better`` of the discordant rows going to the
    challenger when both models are equally good."""
    from scipy.stats import binomtest

    discordant = better + worse
    return 1.0 if discordant == 0 else float(binomtest(better, discordant, 0.5, alternative="greater").pvalue)


def paired_test(
    truth: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    challenger_loss: np.ndarray,
    champion_loss: np.ndarray,
    *,
    level: float = DEFAULT_LEVEL,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedTest:
    """Compare two models' predicted segments (and per-customer log losses) on the same labelled customers.

    The bootstrap resamples customers, keeping each customer's pair of predictions together. Each customer
    falls in one of 4 x 4 x 4 (truth, challenger, champion) cells, so a resample is a multinomial draw of the
    cell counts: exact, and as cheap for a million customers as for a thousand.
    """
    index = {segment: i for i, segment in enumerate(SEGMENTS)}
    t, a, b = (np.array([index[str(v)] for v in column]) for column in (truth, challenger, champion))
    rows, k = len(t), len(SEGMENTS)
    labels = np.unique(np.concatenate([t, a, b]))  # scikit-learn's default: labels seen in truth or predictions
    cells = np.bincount((t * k + a) * k + b, minlength=k**3)
    draws = np.random.default_rng(seed).multinomial(rows, cells / rows, size=resamples).reshape(-1, k, k, k)
    observed = cells.reshape(k, k, k)
    gain = float(_macro_f1(observed.sum(axis=2), labels) - _macro_f1(observed.sum(axis=1), labels))
    gains = _macro_f1(draws.sum(axis=3), labels) - _macro_f1(draws.sum(axis=2), labels)
    better = int(np.sum((a == t) & (b != t)))
    worse = int(np.sum((b == t) & (a != t)))
    diff = np.asarray(challenger_loss, dtype=float) - np.asarray(champion_loss, dtype=float)
    return PairedTest(
        rows=rows,
        resamples=resamples,
        level=level,
        gain=gain,
        lower=float(np.quantile(gains, level)),
        # Ties (no gain) count against the challenger, so identical predictions give p = 1.
        p_value=float((1 + np.sum(gains <= 1e-12)) / (resamples + 1)),
        better=better,
        worse=worse,
        mcnemar_p=_mcnemar_p(better, worse),
        log_loss_diff=float(diff.mean()),
        log_loss_se=float(diff.std(ddof=1) / np.sqrt(rows)) if rows > 1 else float("nan"),
    )


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    margin: float,
    paired: PairedTest | None = None,
    force: bool = False,
    log_loss_tolerance: float = LOG_LOSS_TOLERANCE,
    champion_version: int | None = None,
    rows: int | None = None,
) -> GateDecision:
    """Promote when there is no champion, or when all of these hold on the shared holdout:

    * the challenger's macro-F1 is higher by at least ``margin``, and strictly higher (a tie never promotes);
    * the paired test says the gain is beyond the holdout's noise: its p-value is below its level;
    * its log loss is no worse than the champion's by more than ``log_loss_tolerance``.

    ``force`` promotes a refused challenger. With a champion, ``paired`` is required: without it nothing is
    known about the noise, so nothing is promoted unless forced. ``champion_version`` and ``rows`` only word
    the reason.
    """
    if champion is None:
        return GateDecision(promoted=True, forced=False, reason="no champion yet")
    gain = challenger["macro_f1"] - champion["macro_f1"]
    loss_ok = challenger["log_loss"] <= champion["log_loss"] + log_loss_tolerance
    beyond_noise = paired is not None and paired.p_value < paired.level
    promoted = gain > 0 and gain >= margin and beyond_noise and loss_ok
    who = f"champion v{champion_version}" if champion_version is not None else "champion"
    where = f" on {rows} holdout customers" if rows is not None else ""
    noise = paired.words() if paired is not None else "no paired test"
    if gain == 0:
        verdict = "tie: never promoted without force"
    else:
        verdict = "beyond the noise" if beyond_noise else "within the noise"
    reason = (
        f"macro-F1 {challenger['macro_f1']:.4f} vs {who} {champion['macro_f1']:.4f}{where} "
        f"(gain {gain:+.4f}, margin {margin:+.4f}; {verdict}); log loss "
        f"{challenger['log_loss']:.4f} vs {champion['log_loss']:.4f} (tolerance {log_loss_tolerance}); {noise}"
    )
    if not promoted and force:
        return GateDecision(promoted=True, forced=True, reason=f"force_promote overrode the gate: {reason}")
    return GateDecision(promoted=promoted, forced=False, reason=reason)
