"""The data dictionary: the analyst views and their columns as documented in the database (``COMMENT ON``).

``ANALYST_VIEWS`` is the one list of what analysts may read: the ``segmentation_analyst`` grants, the comment
check and the README's data dictionary (between ``START`` and ``END``) all follow it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from segmentation.errors import DataError

log = logging.getLogger(__name__)

SCHEMA = "segmentation"
ANALYST_VIEWS: tuple[str, ...] = (
    "current_segments",
    "segment_summary",
    "segment_changes",
    "segment_transitions",
    "segment_feed",
    "realised_quality",
    "realised_quality_daily",
)
START = "<!-- data-dictionary:start -->"
END = "<!-- data-dictionary:end -->"


@dataclass(frozen=True)
class Column:
    """One column of a view: its name, SQL type and comment ('' when it has none)."""

    name: str
    type: str
    comment: str


@dataclass(frozen=True)
class View:
    """One analyst view with its comment and its columns in order."""

    name: str
    comment: str
    columns: tuple[Column, ...]


def describe(cur: Any, views: tuple[str, ...] = ANALYST_VIEWS) -> list[View]:
    """The views of ``views`` that exist, in that order, with their comments from ``pg_description``."""
    cur.execute(
        """SELECT c.relname, coalesce(obj_description(c.oid, 'pg_class'), ''), a.attname,
                  format_type(a.atttypid, a.atttypmod), coalesce(col_description(c.oid, a.attnum), '')
           FROM pg_class AS c
           JOIN pg_namespace AS n ON n.oid = c.relnamespace
           JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
           WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('v', 'm', 'r', 'p')
           ORDER BY c.relname, a.attnum""",
        (SCHEMA, list(views)),
    )
    found: dict[str, tuple[str, list[Column]]] = {}
    for view, comment, column, type_, column_comment in cur.fetchall():
        found.setdefault(view, (comment, []))[1].append(Column(column, type_, column_comment))
    return [View(v, found[v][0], tuple(found[v][1])) for v in views if v in found]


def missing(described: list[View], views: tuple[str, ...] = ANALYST_VIEWS) -> list[str]:
    """The views of ``views`` that the database does not have."""
    present = {v.name for v in described}
    return [v for v in views if v not in present]


def undocumented(described: list[View]) -> list[str]:
    """``view`` or ``view.column`` for every view or column without a comment."""
    gaps = [v.name for v in described if not v.comment.strip()]
    gaps += [f"{v.name}.{c.name}" for v in described for c in v.columns if not c.comment.strip()]
    return gaps


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(described: list[View]) -> str:
    """Markdown: per view a heading, its comment and a table of its columns."""
    parts: list[str] = []
    for view in described:
        parts += [f"#### `{SCHEMA}.{view.name}`", "", _cell(view.comment), ""]
        parts += ["| column | type | meaning |", "|---|---|---|"]
        parts += [f"| `{c.name}` | {c.type} | {_cell(c.comment)} |" for c in view.columns]
        parts.append("")
    return "\n".join(parts).rstrip("\n") + "\n"


def section(text: str) -> str:
    """What ``text`` holds between the markers (exclusive); DataError when they are missing or out of order."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise DataError(f"no data dictionary section: expected the lines {START!r} and then {END!r}")
    return text[start + len(START) : end].strip("\n") + "\n"


def replace_section(text: str, dictionary: str) -> str:
    """``text`` with the part between the markers replaced by ``dictionary``."""
    section(text)  # checks the markers
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    body = dictionary.strip("\n")
    return f"{head}{START}\n{body}\n{END}{tail}"
