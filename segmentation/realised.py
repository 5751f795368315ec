"""Realised quality: how the champion's assignments fared against late labels, and when that is an alert.

A late label is one that arrived after the customer had been scored; ``segmentation.label_outcomes`` keeps it
next to the segment assigned before it arrived, and ``segmentation.realised_quality`` sums those outcomes per
model version (sql/016). :func:`check` compares the champion's realised accuracy with its holdout accuracy
(``model_versions.metrics->>'accuracy'``).
"""

from __future__ import annotations

import logging
from typing import Any

from segmentation.config import Settings

log = logging.getLogger(__name__)

KIND = "realised_quality_drop"
# A drop equal to the margin is not above it, whatever the last bits of the floating-point difference say.
TOLERANCE = 1e-12


def champion_figures(cur: Any) -> dict[str, Any] | None:
    """The champion's holdout accuracy and realised figures (``labelled`` 0 without late labels); None without
    a champion."""
    cur.execute(
        """SELECT version, (metrics->>'accuracy')::double precision FROM segmentation.model_versions
           WHERE status = 'champion'"""
    )
    champion = cur.fetchone()
    if champion is None:
        return None
    # A constant version, so that the view's aggregates read only this version's outcomes (by index).
    cur.execute(
        """SELECT labelled, accuracy, macro_f1, log_loss, window_start, window_end
           FROM segmentation.realised_quality WHERE model_version = %s""",
        (champion[0],),
    )
    row = (*champion, *(cur.fetchone() or (0, None, None, None, None, None)))
    keys = ("model_version", "holdout_accuracy", "labelled", "realised_accuracy", "realised_macro_f1")
    keys += ("realised_log_loss", "window_start", "window_end")
    return dict(zip(keys, row, strict=True))


def is_drop(figures: dict[str, Any], *, margin: float, min_labels: int) -> bool:
    """Whether realised accuracy is more than ``margin`` below holdout accuracy on at least ``min_labels``."""
    if figures["holdout_accuracy"] is None or figures["realised_accuracy"] is None:
        return False
    if figures["labelled"] < min_labels:
        return False
    return figures["holdout_accuracy"] - figures["realised_accuracy"] > margin + TOLERANCE


def already_alerted(cur: Any, model_version: int) -> bool:
    """Whether a realised-quality alert was raised for ``model_version`` before."""
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM segmentation.alerts WHERE kind = %s AND details->>'model_version' = %s)",
        (KIND, str(model_version)),
    )
    return bool(cur.fetchone()[0])


def check(cur: Any, settings: Settings) -> dict[str, Any] | None:
    """The details of a ``realised_quality_drop`` alert to raise, or None.

    An alert is due when the champion's realised accuracy is more than ``settings.realised_margin`` below its
    holdout accuracy on at least ``settings.realised_min_labels`` late labels, and no such alert was raised
    for that version before: once per champion version, so a lasting drop is not repeated every night.
    """
    figures = champion_figures(cur)
    if figures is None:
        return None
    margin, min_labels = settings.realised_margin, settings.realised_min_labels
    if not is_drop(figures, margin=margin, min_labels=min_labels):
        return None
    if already_alerted(cur, figures["model_version"]):
        log.info("realised accuracy of v%s is still low; alerted before", figures["model_version"])
        return None
    return {**figures, "margin": margin, "min_labels": min_labels}


def alert_text(details: dict[str, Any]) -> str:
    """One line naming both accuracies, the labels counted and the margin."""
    return (
        f"realised accuracy of champion v{details['model_version']} is {details['realised_accuracy']:.1%} on "
        f"{details['labelled']} late labels ({details['window_start']:%Y-%m-%d} to {details['window_end']:%Y-%m-%d}), "
        f"{details['holdout_accuracy'] - details['realised_accuracy']:.1%} below its holdout accuracy of "
        f"{details['holdout_accuracy']:.1%} (margin {details['margin']:.1%}, at least {details['min_labels']} labels)"
    )
