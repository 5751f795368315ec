"""Chart data for the pages: plain dicts that the templates embed as JSON and ``static/segmentation.js`` draws."""

from __future__ import annotations

import math
from typing import Any

from segmentation.columns import ATTRIBUTE_COLUMNS, CATEGORICAL_COLUMNS, SEGMENTS
from segmentation.distributions import MISSING, NUMERIC_BUCKET_ORDER, TOTAL_ATTRIBUTE

COLOURS = {"A": "#1f77b4", "B": "#ff7f0e", "C": "#2ca02c", "D": "#d62728", "all": "#7f7f7f"}


def _label(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value)


def share_history(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Line chart: each segment's share (%) over the last runs."""
    return {
        "type": "line",
        "labels": [_label(h["finished_at"]) for h in history],
        "datasets": [{"label": s, "color": COLOURS[s], "data": [_pct(h.get(s)) for h in history]} for s in SEGMENTS],
        "y_title": "share of customers (%)",
    }


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * float(value), 2)


def attribute_distributions(dist: dict[str, dict[str, dict[str, int]]]) -> list[dict[str, Any]]:
    """Per attribute, a bar chart: each segment's distribution over the buckets (%) against the population."""
    charts = []
    for attribute in ATTRIBUTE_COLUMNS:
        per_segment = dist.get(attribute)
        if not per_segment:
            continue
        buckets = _bucket_order(attribute, per_segment)
        population = {b: sum(per_segment.get(s, {}).get(b, 0) for s in SEGMENTS) for b in buckets}
        datasets = [
            {"label": s, "color": COLOURS[s], "data": _shares(per_segment.get(s, {}), buckets)}
            for s in SEGMENTS
            if s in per_segment
        ]
        datasets.append({"label": "all customers", "color": COLOURS["all"], "data": _shares(population, buckets)})
        charts.append(
            {"id": f"dist-{attribute}", "title": attribute, "type": "bar", "labels": buckets, "datasets": datasets}
        )
    return charts


def _bucket_order(attribute: str, per_segment: dict[str, dict[str, int]]) -> list[str]:
    seen = {b for counts in per_segment.values() for b in counts}
    if attribute in NUMERIC_BUCKET_ORDER:
        return [b for b in NUMERIC_BUCKET_ORDER[attribute] if b in seen]
    ordered = sorted(b for b in seen if b != MISSING)
    return [*ordered, MISSING] if MISSING in seen else ordered


def _shares(counts: dict[str, int], buckets: list[str]) -> list[float]:
    total = sum(counts.get(b, 0) for b in buckets)
    return [round(100 * counts.get(b, 0) / total, 2) if total else 0.0 for b in buckets]


def quality(rows: list[dict[str, Any]], drift_threshold: float) -> list[dict[str, Any]]:
    """Line charts over runs: PSI per column with the retrain threshold, missing-value rates, reject share."""
    runs: list[str] = []
    labels: list[str] = []
    values: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        if row["run_id"] not in runs:
            runs.append(row["run_id"])
            labels.append(_label(row["started_at"]))
        values.setdefault((row["metric"], row["subject"]), {})[row["run_id"]] = row["value"]

    def series(metric: str, subjects: tuple[str, ...], scale: float = 1.0) -> list[dict[str, Any]]:
        out = []
        for i, subject in enumerate(subjects):
            got = values.get((metric, subject))
            if got:
                data = [None if r not in got or got[r] is None else round(got[r] * scale, 4) for r in runs]
                out.append({"label": subject or metric, "color": _palette(i), "data": data})
        return out

    psi = series("psi", ATTRIBUTE_COLUMNS)
    psi.append(
        {"label": f"retrain threshold ({drift_threshold})", "color": "#000000", "dashed": True,
         "data": [drift_threshold for _ in runs]}
    )  # fmt: skip
    return [
        {"id": "psi", "title": "Population stability index per input column", "type": "line", "labels": labels,
         "datasets": psi, "y_title": "PSI"},
        {"id": "missing", "title": "Missing-value rate per column (%)", "type": "line", "labels": labels,
         "datasets": series("missing_rate", ATTRIBUTE_COLUMNS, 100.0), "y_title": "% missing"},
        {"id": "rejects", "title": "Reject share per run (%)", "type": "line", "labels": labels,
         "datasets": series("reject_share", ("",), 100.0), "y_title": "% rejected"},
    ]  # fmt: skip


def _palette(i: int) -> str:
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    return colours[i % len(colours)]


def calibration(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Reliability diagram of the champion: observed frequency against mean predicted probability per class."""
    reliability = metrics.get("reliability")
    if not reliability:
        return None
    datasets = [
        {"label": s, "color": COLOURS[s],
         "points": [{"x": x, "y": y} for x, y in zip(reliability[s]["predicted"], reliability[s]["observed"],
                                                      strict=True)]}
        for s in SEGMENTS if s in reliability
    ]  # fmt: skip
    datasets.append({"label": "perfect", "color": COLOURS["all"], "dashed": True,
                     "points": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]})  # fmt: skip
    return {"id": "calibration", "type": "scatter", "datasets": datasets}


# ---- server-rendered views: the transition heat-map and the realised-accuracy chart (SVG) ----------------

NEW = "new"  # the heat-map's row of customers scored for the first time (from_segment NULL)
CAUSES = ("new", "model", "attributes", "both")


def transition_matrix(rows: list[dict[str, Any]], *, first_scorings: bool, cause: str | None = None) -> dict[str, Any]:
    """Heat-map table of customers per from-segment (rows; ``new`` for a first scoring when ``first_scorings``)
    and to-segment (columns), each cell shaded by its count against the largest cell; only ``cause`` if given.

    ``rows``: ``{"from_segment", "to_segment", "customers"}`` and, for a run's transitions, ``"cause"``.
    """
    froms = [NEW, *SEGMENTS] if first_scorings else list(SEGMENTS)
    counts = {(f, t): 0 for f in froms for t in SEGMENTS}
    by_cause = dict.fromkeys(CAUSES, 0)
    for row in rows:
        key = (row["from_segment"] or NEW, row["to_segment"])
        n = int(row["customers"])
        if row.get("cause") in by_cause:
            by_cause[row["cause"]] += n
        if key in counts and (cause is None or row.get("cause") == cause):
            counts[key] += n
    top = max(counts.values(), default=0)
    cells = [[_cell(f, t, counts[(f, t)], top) for t in SEGMENTS] for f in froms]
    return {
        "rows": froms,
        "columns": list(SEGMENTS),
        "cells": cells,
        "row_totals": [sum(c["customers"] for c in line) for line in cells],
        "column_totals": [sum(counts[(f, t)] for f in froms) for t in SEGMENTS],
        "total": sum(counts.values()),
        "unchanged": sum(counts.get((s, s), 0) for s in SEGMENTS),
        "by_cause": by_cause,
        "cause": cause,
    }


def _cell(source: str, target: str, customers: int, top: int) -> dict[str, Any]:
    alpha = round(0.12 + 0.88 * customers / top, 3) if customers and top else 0.0
    return {
        "from": source,
        "to": target,
        "customers": customers,
        "shade": alpha,
        "style": f"background-color: rgba(1, 124, 238, {alpha})",
        "dark": alpha > 0.55,
    }


def realised_accuracy(
    daily: list[dict[str, Any]], holdout: dict[int, float | None], width: int = 760, height: int = 300
) -> dict[str, Any] | None:
    """Geometry of an SVG line chart: realised accuracy per day, one line per model version, each with a dashed
    reference line at its holdout accuracy. None without any day."""
    days = sorted({r["day"] for r in daily})
    if not days:
        return None
    left, right, top, bottom = 56, 44, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max((days[-1] - days[0]).days, 1)
    values = [float(r["accuracy"]) for r in daily if r["accuracy"] is not None]
    values += [float(v) for v in holdout.values() if v is not None]
    lo, hi, step = _y_range(min(values, default=0.0), max(values, default=1.0))

    def x(day: Any) -> float:
        return round(left + plot_w * ((day - days[0]).days / span if len(days) > 1 else 0.5), 1)

    def y(value: float) -> float:
        return round(top + plot_h * (hi - value) / (hi - lo), 1)

    series = []
    for i, version in enumerate(sorted({int(r["model_version"]) for r in daily})):
        mine = [r for r in daily if int(r["model_version"]) == version and r["accuracy"] is not None]
        points = [{"x": x(r["day"]), "y": y(float(r["accuracy"])), "day": r["day"].isoformat(),
                   "accuracy": float(r["accuracy"]), "labelled": int(r["labelled"])} for r in mine]  # fmt: skip
        path = " ".join(
            f"{'M' if j == 0 or (r['day'] - mine[j - 1]['day']).days > 1 else 'L'} {p['x']} {p['y']}"
            for j, (r, p) in enumerate(zip(mine, points, strict=True))
        )
        reference = holdout.get(version)
        line = None
        if reference is not None and points:
            x1, x2 = points[0]["x"], points[-1]["x"]
            line = {"x1": min(x1, x2 - 12), "x2": max(x2, x1 + 12), "y": y(float(reference)), "value": reference}
        series.append({"version": version, "color": _palette(i), "path": path, "points": points, "holdout": line})
    y_ticks = [{"y": y(lo + k * step), "label": f"{100 * (lo + k * step):.0f} %"}
               for k in range(round((hi - lo) / step) + 1)]  # fmt: skip
    shown = days if len(days) <= 6 else [days[round(k * (len(days) - 1) / 5)] for k in range(6)]
    return {
        "width": width, "height": height, "left": left, "right": width - right, "top": top, "bottom": height - bottom,
        "x_ticks": [{"x": x(d), "label": d.isoformat()} for d in shown], "y_ticks": y_ticks, "series": series,
    }  # fmt: skip


def _y_range(low: float, high: float) -> tuple[float, float, float]:
    """The accuracy axis: whole ticks of 1, 2, 5, 10, 20 or 25 points around [low, high], within 0..1."""
    step = next((s for s in (0.01, 0.02, 0.05, 0.1, 0.2) if max(high - low, 0.02) / s <= 6), 0.25)
    lo = max(0.0, round(math.floor(low / step + 1e-9) * step, 4))
    hi = min(1.0, round(math.ceil(high / step - 1e-9) * step, 4))
    if hi - lo < step:
        lo, hi = (lo, round(lo + step, 4)) if lo + step <= 1.0 else (round(hi - step, 4), hi)
    return lo, hi, step


def categorical(attribute: str) -> bool:
    return attribute in CATEGORICAL_COLUMNS


__all__ = [
    "TOTAL_ATTRIBUTE",
    "attribute_distributions",
    "calibration",
    "quality",
    "realised_accuracy",
    "share_history",
    "transition_matrix",
]
