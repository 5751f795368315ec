"""Approval before promotion: what a reviewer reads (a markdown body) and what their answer means.

Pure functions, no database: metrics and profiles as dicts, segments as Series, markdown out. The task layer
(``segmentation.tasks.review``) gathers the figures; Airflow's human-in-the-loop task shows the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from segmentation.columns import SEGMENTS
from segmentation.errors import DataError

APPROVE = "Approve"
REJECT = "Reject"
OPTIONS: tuple[str, ...] = (APPROVE, REJECT)
# Who a decision is recorded as when nobody answered before the response timeout.
TIMEOUT_REVIEWER = "timeout"
# (metrics key, label, True when higher is better)
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "Accuracy", True),
    ("macro_f1", "Macro-F1", True),
    ("log_loss", "Log loss", False),
    ("ece_mean", "Calibration error (mean ECE)", False),
)
TOP_PROFILE_CHANGES = 6


@dataclass(frozen=True)
class Decision:
    """A reviewer's answer: approved or not, by whom (``TIMEOUT_REVIEWER`` on a timeout) and their comment."""

    approved: bool
    reviewer: str
    comment: str


def _figure(value: Any) -> str:
    return f"{float(value):.4f}" if value is not None else "–"


def metrics_table(challenger: Mapping[str, Any], champion: Mapping[str, Any] | None) -> str:
    """Challenger against champion on the same holdout: one markdown row per metric, with the change."""
    lines = ["| Metric | Challenger | Champion | Change |", "|---|---:|---:|---:|"]
    for key, label, higher_better in METRICS:
        new = challenger.get(key)
        old = champion.get(key) if champion else None
        change = "–"
        if new is not None and old is not None:
            delta = float(new) - float(old)
            better = delta > 0 if higher_better else delta < 0
            change = f"{delta:+.4f}" + (" (better)" if better else " (worse)" if delta else "")
        lines.append(f"| {label} | {_figure(new)} | {_figure(old)} | {change} |")
    return "\n".join(lines)


def share_moves(current: pd.Series, proposed: pd.Series) -> pd.DataFrame:
    """Per segment (SEGMENTS order): its share today and with the challenger, and the move in points.

    ``current`` and ``proposed`` are the segments of the same customers (aligned by index).
    """
    if len(current) != len(proposed) or not current.index.equals(proposed.index):
        raise DataError(f"share_moves needs the same customers on both sides; got {len(current)} and {len(proposed)}")
    total = max(len(current), 1)
    before = current.astype(str).value_counts().reindex(list(SEGMENTS), fill_value=0) / total
    after = proposed.astype(str).value_counts().reindex(list(SEGMENTS), fill_value=0) / total
    switched = int((current.astype(str) != proposed.astype(str)).sum())
    frame = pd.DataFrame({"current": before, "challenger": after, "points": (after - before) * 100})
    frame.index.name = "segment"
    frame.attrs["switched"] = switched
    frame.attrs["customers"] = len(current)
    return frame


def shares_table(moves: pd.DataFrame) -> str:
    """The markdown of :func:`share_moves`."""
    lines = ["| Segment | Today | Challenger | Move |", "|---|---:|---:|---:|"]
    for segment, row in moves.iterrows():
        lines.append(
            f"| {segment} | {row['current'] * 100:.1f} % | {row['challenger'] * 100:.1f} % | "
            f"{row['points']:+.1f} points |"
        )
    return "\n".join(lines)


def _traits(profile: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {str(t["column"]): t for t in (profile or {}).get("traits", [])}


def profile_changes(
    champion: Mapping[str, Any] | None, challenger: Mapping[str, Any], top: int = TOP_PROFILE_CHANGES
) -> list[str]:
    """The largest changes of the segment descriptions, largest first: a trait a segment gains, loses or whose
    value changes, ranked by the effect size (``segmentation.profiles``) that appears or disappears."""
    ranked: list[tuple[float, str]] = []
    for segment in SEGMENTS:
        old, new = _traits((champion or {}).get(segment)), _traits(challenger.get(segment))
        for column in sorted(set(old) | set(new)):
            before, after = old.get(column), new.get(column)
            if after is not None and before is None:
                ranked.append((abs(float(after["effect"])), f"Segment {segment} gains: {after['text']}"))
            elif before is not None and after is None:
                ranked.append((abs(float(before["effect"])), f"Segment {segment} loses: {before['text']}"))
            elif before is not None and after is not None and before.get("value") != after.get("value"):
                size = abs(float(after["effect"])) + abs(float(before["effect"]))
                ranked.append((size, f"Segment {segment}: {before['text']} → {after['text']}"))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    return [text for _, text in ranked[:top]]


def review_body(
    *,
    version: int,
    champion_version: int | None,
    reason: str,
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    moves: pd.DataFrame | None,
    changes: list[str],
    holdout_rows: int,
) -> str:
    """The markdown a reviewer reads before approving or rejecting model version ``version``."""
    against = f"champion v{champion_version}" if champion_version is not None else "no champion yet"
    parts = [
        f"**Model version {version}** against {against}, both scored on the same {holdout_rows} stable-holdout "
        "customers that neither model was fitted on.",
        f"Gate: {reason}",
        "#### Holdout metrics",
        metrics_table(challenger, champion),
    ]
    if moves is not None:
        parts += [
            "#### Segment shares",
            f"A fixed sample of {moves.attrs.get('customers', 0)} scored customers, by their segment today and "
            f"by the challenger; {moves.attrs.get('switched', 0)} of them would change segment.",
            shares_table(moves),
        ]
    parts.append("#### Segment descriptions: largest changes")
    parts.append("\n".join(f"- {c}" for c in changes) if changes else "No trait of any segment changes.")
    parts.append(f"*Approve* makes v{version} the champion (and rescores everyone); *Reject* leaves it a candidate.")
    return "\n\n".join(parts)


def decision_of(response: Mapping[str, Any]) -> Decision:
    """The decision in a human-in-the-loop task's result (chosen option, responding user, ``comment`` param).

    No responding user means the response timeout chose the default: recorded as ``TIMEOUT_REVIEWER``.
    """
    chosen = list(response.get("chosen_options") or [])
    if len(chosen) != 1 or chosen[0] not in OPTIONS:
        raise DataError(f"a review needs exactly one of {list(OPTIONS)}; got {chosen}")
    user = response.get("responded_by_user")
    reviewer = str((user or {}).get("name") or (user or {}).get("id") or "") if user else ""
    if not reviewer:
        reviewer = TIMEOUT_REVIEWER
    comment = str((response.get("params_input") or {}).get("comment") or "").strip()
    return Decision(approved=chosen[0] == APPROVE and reviewer != TIMEOUT_REVIEWER, reviewer=reviewer, comment=comment)
