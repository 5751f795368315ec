"""Load customers (and known segments) into PostgreSQL with COPY and an upsert by id."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from segmentation.cleaning import raw_json
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, SEGMENT, SEGMENTS
from segmentation.db import connect
from segmentation.pgcopy import copy_frame_in

log = logging.getLogger(__name__)

_ATTRS = ", ".join(ATTRIBUTE_COLUMNS)
_UPSERT_CUSTOMERS = f"""
INSERT INTO segmentation.customers (customer_id, {_ATTRS}, updated_at)
SELECT customer_id, {_ATTRS}, now() FROM load_stage
ON CONFLICT (customer_id) DO UPDATE
SET {", ".join(f"{c} = EXCLUDED.{c}" for c in ATTRIBUTE_COLUMNS)}, updated_at = now()
WHERE ({", ".join(f"customers.{c}" for c in ATTRIBUTE_COLUMNS)})
      IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in ATTRIBUTE_COLUMNS)})
RETURNING (xmax = 0) AS inserted
"""
_UPSERT_LABELS = """
INSERT INTO segmentation.customer_labels (customer_id, segment, labeled_at)
SELECT customer_id, segment, now() FROM load_stage WHERE segment IS NOT NULL
ON CONFLICT (customer_id) DO UPDATE SET segment = EXCLUDED.segment, labeled_at = now()
WHERE customer_labels.segment IS DISTINCT FROM EXCLUDED.segment
"""


@dataclass(frozen=True)
class LoadResult:
    """What one load did."""

    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    labels: int
    rejected: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _scrub(values: pd.Series) -> pd.Series:
    """Text as PostgreSQL can store it: NUL characters become U+FFFD, everything else is kept."""
    text = values.astype("object").where(values.notna(), None)
    return text.map(lambda v: str(v).replace("\x00", "\ufffd"), na_action="ignore")


def prepare_load(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a raw batch into loadable rows and rejects (missing, invalid or repeated ids, bad labels).

    Returns ``(rows, rejects)``: rows have an int64 ``customer_id``, text attributes and an optional
    ``segment``; rejects have ``customer_id`` (or NA), ``raw`` JSON and ``reasons``.
    """
    text_id = _scrub(raw[CUSTOMER_ID]).map(lambda v: v.strip(), na_action="ignore")
    parsed = pd.to_numeric(text_id, errors="coerce")
    missing = text_id.isna() | text_id.eq("")
    whole = parsed.notna() & np.isfinite(parsed) & (parsed == np.floor(parsed)) & (parsed > 0)
    whole &= parsed < 2**63
    invalid = ~missing & ~whole
    ids = parsed.where(whole).astype("Int64")
    duplicate = ids.notna() & ids.duplicated(keep="last")

    reasons = pd.Series([[] for _ in range(len(raw))], index=raw.index, dtype="object")
    for name, mask in (
        ("missing_id", missing),
        ("invalid_id", invalid),
        ("duplicate_id_in_batch", duplicate),
    ):
        for i in np.flatnonzero(mask.to_numpy(dtype=bool)):
            reasons.iat[i].append(name)

    rows = pd.DataFrame({CUSTOMER_ID: ids}, index=raw.index)
    for column in ATTRIBUTE_COLUMNS:
        rows[column] = _scrub(raw[column])
    label_rejects = pd.Series(False, index=raw.index)
    if SEGMENT in raw.columns:
        label = _scrub(raw[SEGMENT]).map(lambda v: v.strip().upper() or None, na_action="ignore")
        label_rejects = label.notna() & ~label.isin(SEGMENTS)
        rows[SEGMENT] = label.where(~label_rejects, None)
        for i in np.flatnonzero(label_rejects.to_numpy(dtype=bool)):
            reasons.iat[i].append("segment_not_allowed")

    bad = reasons.map(bool)
    id_bad = (missing | invalid | duplicate).to_numpy(dtype=bool)
    columns = [c for c in (CUSTOMER_ID, *ATTRIBUTE_COLUMNS, SEGMENT) if c in raw.columns]
    rejects = pd.DataFrame({CUSTOMER_ID: ids[bad], "raw": raw_json(raw.loc[bad], columns), "reasons": reasons[bad]})
    return rows.loc[~id_bad].reset_index(drop=True), rejects.reset_index(drop=True)


def to_raw_text(df: pd.DataFrame) -> pd.DataFrame:
    """Typed customers (e.g. from the generator) as the text rows the source table holds."""
    out = pd.DataFrame({CUSTOMER_ID: df[CUSTOMER_ID].astype("string")})
    for column in ATTRIBUTE_COLUMNS:
        out[column] = df[column].astype("string")
    if SEGMENT in df.columns:
        out[SEGMENT] = df[SEGMENT].astype("object").where(df[SEGMENT].notna(), None)
    return out.astype("object").where(out.notna(), None)


def write_rejects(cur, rejects: pd.DataFrame, run_id: str) -> int:
    """Insert quarantined rows; a row already quarantined for the same source version is skipped."""
    if rejects.empty:
        return 0
    frame = rejects.copy()
    frame["reasons"] = frame["reasons"].map(lambda r: "{" + ",".join(r) + "}")
    frame["run_id"] = run_id
    if "source_updated_at" not in frame.columns:
        frame["source_updated_at"] = None
    cur.execute(
        "CREATE TEMP TABLE IF NOT EXISTS reject_stage "
        "(customer_id bigint, raw jsonb, reasons text[], run_id text, source_updated_at timestamptz)"
    )
    cur.execute("TRUNCATE reject_stage")
    copy_frame_in(cur, frame, "reject_stage", ["customer_id", "raw", "reasons", "run_id", "source_updated_at"])
    cur.execute(
        """INSERT INTO segmentation.customer_rejects (customer_id, raw, reasons, run_id, source_updated_at)
           SELECT customer_id, raw, reasons, run_id, source_updated_at FROM reject_stage
           ON CONFLICT (customer_id, source_updated_at)
               WHERE customer_id IS NOT NULL AND source_updated_at IS NOT NULL
           DO NOTHING"""
    )
    return cur.rowcount


def load_customers(raw: pd.DataFrame, *, run_id: str, url: str) -> LoadResult:
    """Upsert a raw batch into ``customers`` (and ``customer_labels``) in one transaction.

    Unchanged rows keep their ``updated_at``; changed rows get a new one, so the next nightly run
    picks up exactly the new and changed customers.
    """
    rows, rejects = prepare_load(raw)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE load_stage (customer_id bigint, {', '.join(f'{c} text' for c in ATTRIBUTE_COLUMNS)},"
            " segment char(1)) ON COMMIT DROP"
        )
        stage_columns = [CUSTOMER_ID, *ATTRIBUTE_COLUMNS] + ([SEGMENT] if SEGMENT in rows.columns else [])
        copy_frame_in(cur, rows, "load_stage", stage_columns)
        cur.execute(_UPSERT_CUSTOMERS)
        flags = [r[0] for r in cur.fetchall()]
        inserted = sum(flags)
        cur.execute(_UPSERT_LABELS)
        labels = cur.rowcount
        rejected = write_rejects(cur, rejects, run_id)
    result = LoadResult(
        rows_read=len(raw),
        inserted=inserted,
        updated=len(flags) - inserted,
        unchanged=len(rows) - len(flags),
        labels=labels,
        rejected=rejected,
    )
    log.info("loaded customers: %s", result.as_dict())
    return result
