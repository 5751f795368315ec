"""The promotion gate: whether a challenger replaces the champion, decided from their metrics alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# How much worse a challenger's log loss may be than the champion's: probabilities are published too, so a
# challenger may not buy macro-F1 with much worse probabilities.
LOG_LOSS_TOLERANCE = 0.01


@dataclass(frozen=True)
class GateDecision:
    """The outcome: ``forced`` is True only when ``force`` overrode a refusal."""

    promoted: bool
    forced: bool
    reason: str


def decide(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    margin: float,
    force: bool = False,
    log_loss_tolerance: float = LOG_LOSS_TOLERANCE,
    champion_version: int | None = None,
    rows: int | None = None,
) -> GateDecision:
    """Promote when there is no champion, or when the challenger's macro-F1 is higher by at least ``margin``
    and its log loss is no worse than the champion's by more than ``log_loss_tolerance``; ``force`` promotes
    a refused challenger. Both metric sets must come from the same customers, which neither model was
    fitted on. ``champion_version`` and ``rows`` only word the reason.
    """
    if champion is None:
        return GateDecision(promoted=True, forced=False, reason="no champion yet")
    gain = challenger["macro_f1"] - champion["macro_f1"]
    loss_ok = challenger["log_loss"] <= champion["log_loss"] + log_loss_tolerance
    promoted = gain >= margin and loss_ok
    who = f"champion v{champion_version}" if champion_version is not None else "champion"
    where = f" on {rows} holdout customers" if rows is not None else ""
    reason = (
        f"macro-F1 {challenger['macro_f1']:.4f} vs {who} {champion['macro_f1']:.4f}{where} "
        f"(gain {gain:+.4f}, margin {margin:+.4f}); log loss "
        f"{challenger['log_loss']:.4f} vs {champion['log_loss']:.4f} (tolerance {log_loss_tolerance})"
    )
    if not promoted and force:
        return GateDecision(promoted=True, forced=True, reason=f"force_promote overrode the gate: {reason}")
    return GateDecision(promoted=promoted, forced=False, reason=reason)
