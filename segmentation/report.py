"""A plain-text report of the current segments, the champion and its segment profiles."""

from __future__ import annotations

from typing import Any

from segmentation import registry
from segmentation.db import connect


def _fetch(cur: Any, query: str) -> list[dict[str, Any]]:
    cur.execute(query)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a fixed-width text table."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    cells = [[("" if r[k] is None else str(r[k])) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    header = "  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([header, "  ".join("-" * w for w in widths), *body])


def psql_command(url: str) -> str:
    """How to open the customer database in psql; a password is never printed (psql asks for it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql", password=None)
    return f"psql '{parsed.render_as_string(hide_password=False)}'"


def segment_report(url: str) -> str:
    """Segment summary, recent runs, the champion and its profiles, plus the psql command."""
    with connect(url) as conn, conn.cursor() as cur:
        summary = _fetch(cur, "SELECT * FROM segmentation.segment_summary ORDER BY segment")
        runs = _fetch(
            cur,
            """SELECT run_id, status, model_version, started_at, finished_at
               FROM segmentation.pipeline_runs ORDER BY started_at DESC LIMIT 5""",
        )
        current = registry.champion(cur)
        profiles: dict[str, Any] = {}
        if current is not None:
            cur.execute("SELECT profiles FROM segmentation.model_versions WHERE version = %s", (current.version,))
            profiles = cur.fetchone()[0] or {}
        rejects = _fetch(
            cur,
            """SELECT reason, count(*) AS rows FROM segmentation.customer_rejects, unnest(reasons) AS reason
               GROUP BY reason ORDER BY count(*) DESC LIMIT 10""",
        )
    lines = ["Segment summary (segmentation.segment_summary)", format_table(summary), ""]
    if current is not None:
        metrics = current.metrics
        lines.append(
            f"Champion: model v{current.version} ({current.model_name}), holdout accuracy "
            f"{metrics.get('accuracy', float('nan')):.3f}, macro-F1 {metrics.get('macro_f1', float('nan')):.3f}"
        )
        lines += [f"  {s}: {p.get('description', '')}" for s, p in sorted(profiles.items())]
        lines.append("")
    lines += ["Recent runs (segmentation.pipeline_runs)", format_table(runs), ""]
    lines += ["Quarantine reasons (segmentation.customer_rejects)", format_table(rejects), ""]
    lines.append(f"Query it: {psql_command(url)} -c 'SELECT * FROM segmentation.current_segments LIMIT 10'")
    return "\n".join(lines)
