"""Data-quality and drift figures per run, written to ``drift_metrics``, and the drift check for retraining."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from segmentation.columns import ATTRIBUTE_COLUMNS, CATEGORICAL_COLUMNS, MISSING, NUMERIC_COLUMNS
from segmentation.errors import ModelError

log = logging.getLogger(__name__)

_MISSING_SQL = ", ".join(f"avg(({c} IS NULL)::int)" for c in ATTRIBUTE_COLUMNS)


def _put(cur: Any, run_id: str, metric: str, subject: str, value: float | None) -> None:
    cur.execute(
        """INSERT INTO segmentation.drift_metrics (run_id, metric, subject, value) VALUES (%s, %s, %s, %s)
           ON CONFLICT (run_id, metric, subject) DO UPDATE SET value = EXCLUDED.value, computed_at = now()""",
        (run_id, metric, subject, value),
    )


def record_run_metrics(
    cur: Any, run_id: str, *, segment_counts: dict[str, int] | None = None, scored: int | None = None
) -> dict[str, Any]:
    """Reject share, missing-value rates of this run's clean rows and current segment shares.

    ``segment_counts`` (customers per segment, e.g. from ``segment_counts``) and ``scored`` (rows this run
    scored), when given, spare two scans of ``customer_segments``.
    """
    cur.execute(
        """SELECT (steps->'clean'->>'rows')::int, (steps->'clean'->>'rejected')::int
           FROM segmentation.pipeline_runs WHERE run_id = %s""",
        (run_id,),
    )
    row = cur.fetchone()
    rows, rejected = row or (None, None)
    reject_share = (rejected or 0) / rows if rows else 0.0
    _put(cur, run_id, "reject_share", "", reject_share)

    cur.execute(f"SELECT count(*), {_MISSING_SQL} FROM segmentation.clean_customers WHERE run_id = %s", (run_id,))
    cleaned, *missing = cur.fetchone()
    if cleaned:
        for column, rate in zip(ATTRIBUTE_COLUMNS, missing, strict=True):
            _put(cur, run_id, "missing_rate", column, float(rate))

    if segment_counts is None:
        cur.execute("SELECT segment, count(*) FROM segmentation.customer_segments GROUP BY segment")
        segment_counts = dict(cur.fetchall())
    total = sum(n for n in segment_counts.values() if n > 0)
    shares = {s: round(n / total, 4) for s, n in sorted(segment_counts.items()) if n > 0} if total else {}
    for segment, share in shares.items():
        _put(cur, run_id, "segment_share", segment, share)
    if scored is None:
        cur.execute("SELECT count(*) FROM segmentation.customer_segments WHERE run_id = %s", (run_id,))
        scored = int(cur.fetchone()[0])
    return {"reject_share": round(reject_share, 4), "scored_this_run": scored, "segment_shares": shares}


# Shares below this are floored so that a category absent on one side gives a finite PSI.
_PSI_FLOOR = 1e-4


def reference_distributions(frame: pd.DataFrame) -> dict[str, Any]:
    """Category shares and numeric decile bins of training data, kept in the model's data fingerprint."""
    out: dict[str, Any] = {"categorical": {}, "numeric": {}}
    for column in CATEGORICAL_COLUMNS:
        shares = frame[column].astype("object").where(frame[column].notna(), MISSING).value_counts(normalize=True)
        out["categorical"][column] = {str(k): round(float(v), 6) for k, v in shares.items()}
    for column in NUMERIC_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        edges = sorted(set(np.nanquantile(values, np.linspace(0.1, 0.9, 9)).round(6).tolist()))
        out["numeric"][column] = {"edges": edges, "shares": _bucket_shares(values, edges)}
    return out


def _bucket_shares(values: pd.Series, edges: list[float]) -> list[float]:
    """Shares per bucket (like SQL width_bucket over ``edges``), the last bucket holding missing values."""
    buckets = np.searchsorted(np.asarray(edges), values.to_numpy(), side="right")
    buckets = np.where(values.isna().to_numpy(), len(edges) + 1, buckets)
    counts = np.bincount(buckets, minlength=len(edges) + 2)
    return (counts / max(len(values), 1)).round(6).tolist()


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index between two aligned share vectors."""
    e = np.maximum(np.asarray(expected, dtype=float), _PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), _PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _known(column: str, allowed: tuple[str, ...] | list[str], kind: str) -> str:
    """``column`` if it is one of the model's known input columns of ``kind``; it is then safe in SQL text."""
    if column not in allowed:
        raise ModelError(
            f"the champion's data fingerprint names {kind} column {column!r}, which is not an input column; "
            f"expected one of {list(allowed)}. Drift was not computed"
        )
    return column


def current_drift(cur: Any, reference: dict[str, Any]) -> dict[str, float]:
    """PSI per column of today's ``customer_features`` against the training reference, computed in SQL.

    Column names come from the stored fingerprint, so only known input columns (``segmentation.columns``)
    are accepted before any SQL is built; a numeric column's buckets come from ``width_bucket`` over the
    stored edges.
    """
    drift: dict[str, float] = {}
    stored_categorical = reference.get("categorical", {})
    categorical = {_known(c, CATEGORICAL_COLUMNS, "categorical"): v for c, v in stored_categorical.items()}
    numeric = {_known(c, NUMERIC_COLUMNS, "numeric"): v for c, v in reference.get("numeric", {}).items()}
    cur.execute("SELECT count(*) FROM segmentation.customer_features")
    total = int(cur.fetchone()[0])
    if total == 0:
        return drift
    for column, expected in categorical.items():
        cur.execute(
            f"SELECT coalesce({column}, %s), count(*) FROM segmentation.customer_features GROUP BY 1", (MISSING,)
        )
        actual = {str(k): n / total for k, n in cur.fetchall()}
        keys = sorted(set(expected) | set(actual))
        drift[column] = psi([expected.get(k, 0.0) for k in keys], [actual.get(k, 0.0) for k in keys])
    for column, ref in numeric.items():
        edges = [float(e) for e in ref["edges"]]
        # width_bucket(x, edges) counts the edges <= x (edges ascending), as _bucket_shares does in training.
        cur.execute(
            f"""SELECT CASE WHEN {column} IS NULL THEN %s ELSE width_bucket({column}::float8, %s::float8[]) END,
                       count(*)
                FROM segmentation.customer_features GROUP BY 1""",
            (len(edges) + 1, edges),
        )
        counts = dict(cur.fetchall())
        actual = [counts.get(i, 0) / total for i in range(len(edges) + 2)]
        drift[column] = psi(ref["shares"], actual)
    return {k: round(v, 6) for k, v in drift.items()}


def share_moves(cur: Any, run_id: str, points: float) -> dict[str, dict[str, Any]]:
    """Segments whose share (``segment_share`` in ``drift_metrics``) moved more than ``points`` percentage
    points between the last earlier run that recorded shares and ``run_id``."""
    cur.execute(
        """SELECT run_id FROM segmentation.drift_metrics
           WHERE metric = 'segment_share' AND run_id <> %s
           GROUP BY run_id ORDER BY max(computed_at) DESC LIMIT 1""",
        (run_id,),
    )
    row = cur.fetchone()
    if row is None:
        return {}
    previous = row[0]
    cur.execute(
        """SELECT subject, run_id, value FROM segmentation.drift_metrics
           WHERE metric = 'segment_share' AND run_id IN (%s, %s)""",
        (previous, run_id),
    )
    shares: dict[str, dict[str, float]] = {}
    for segment, run, value in cur.fetchall():
        shares.setdefault(segment, {})["after" if run == run_id else "before"] = float(value or 0.0)
    moved = {}
    for segment, pair in sorted(shares.items()):
        before, after = pair.get("before", 0.0), pair.get("after", 0.0)
        if abs(after - before) * 100 > points:
            moved[segment] = {"before": before, "after": after, "since_run": previous}
    return moved


def record_drift(cur: Any, run_id: str, drift: dict[str, float]) -> None:
    """Store per-column PSI figures of a run."""
    for column, value in drift.items():
        _put(cur, run_id, "psi", column, value)
