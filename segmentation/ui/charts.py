"""Chart data for the pages: plain dicts that the templates embed as JSON and ``static/segmentation.js`` draws."""

from __future__ import annotations

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


def categorical(attribute: str) -> bool:
    return attribute in CATEGORICAL_COLUMNS


__all__ = ["TOTAL_ATTRIBUTE", "attribute_distributions", "calibration", "quality", "share_history"]
