"""Exactly-once export of the segment change feed (``segmentation.segment_feed``) to CSV files.

Consumer protocol (one consumer per folder): in one transaction, lock the consumer's row of ``feed_consumers``
(created at watermark 0), read the changes after its watermark in ``change_id`` order, write them to ONE file
named by the change-id range it covers (``segment_feed_<first>-<last>.csv``, zero padded so names sort), under a
temporary name in the same folder, fsynced, then renamed; only then advance the watermark and commit.

- Nothing new: no file, the watermark stays.
- Killed before the rename: a temporary file is left, removed by the next export, which writes the range again.
- Killed after the rename, before the commit: the file exists and the watermark did not move. The next export
  finds the file that starts at watermark + 1 and adopts it (advances the watermark to its end) instead of
  writing an overlapping file, so every change is in exactly one file.

``change_id`` order is commit order (sql/015), so a range once read is complete: no row with a smaller id can
commit later. Ids missing inside a file's range were never committed (a rolled-back writer).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmentation.errors import DataError

log = logging.getLogger(__name__)

FILE_PREFIX = "segment_feed_"
ID_DIGITS = 12
_FILE_NAME = re.compile(rf"^{FILE_PREFIX}(\d{{{ID_DIGITS}}})-(\d{{{ID_DIGITS}}})\.csv$")
_TEMP_SUFFIX = ".tmp"
FEED_COLUMNS = (
    "change_id",
    "customer_id",
    "event",
    "segment",
    "previous_segment",
    "model_version",
    "run_id",
    "changed_at",
)
_COPY_SQL = f"""COPY (SELECT {", ".join(FEED_COLUMNS)} FROM segmentation.segment_feed
                      WHERE change_id > %(after)s AND change_id <= %(upto)s ORDER BY change_id)
                TO STDOUT WITH (FORMAT csv, HEADER)"""


@dataclass(frozen=True)
class ExportResult:
    """What one export did: the file written (if any), the ids it covers, and files adopted from a killed run."""

    consumer: str
    watermark_before: int
    watermark: int
    rows: int = 0
    file: str | None = None
    adopted: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """Small JSON figures (XCom, logs)."""
        return {
            "consumer": self.consumer,
            "watermark_before": self.watermark_before,
            "watermark": self.watermark,
            "rows": self.rows,
            "file": self.file,
            "adopted": list(self.adopted),
        }


def file_name(first: int, last: int) -> str:
    """The file of change ids ``first..last``."""
    if not 0 < first <= last < 10**ID_DIGITS:
        raise DataError(f"change-id range {first}..{last} is not a range of 1..{10**ID_DIGITS - 1}")
    return f"{FILE_PREFIX}{first:0{ID_DIGITS}d}-{last:0{ID_DIGITS}d}.csv"


def parse_name(name: str) -> tuple[int, int] | None:
    """The change-id range of an export file's name; None for any other name."""
    match = _FILE_NAME.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def lock_consumer(cur: Any, consumer: str) -> int:
    """Lock ``consumer``'s row (created at 0 when missing) until the transaction ends; its watermark."""
    cur.execute(
        "INSERT INTO segmentation.feed_consumers (consumer) VALUES (%s) ON CONFLICT (consumer) DO NOTHING",
        (consumer,),
    )
    cur.execute("SELECT last_change_id FROM segmentation.feed_consumers WHERE consumer = %s FOR UPDATE", (consumer,))
    return int(cur.fetchone()[0])


def advance(cur: Any, consumer: str, last_change_id: int) -> None:
    """Move ``consumer``'s watermark to ``last_change_id`` (in the caller's transaction)."""
    cur.execute(
        "UPDATE segmentation.feed_consumers SET last_change_id = %s, updated_at = now() WHERE consumer = %s",
        (last_change_id, consumer),
    )


def file_starting_at(directory: Path, first: int) -> tuple[str, int] | None:
    """The export file in ``directory`` whose range starts at ``first``: its name and last id; else None."""
    found = [(name, rng[1]) for name in os.listdir(directory) if (rng := parse_name(name)) and rng[0] == first]
    if len(found) > 1:
        raise DataError(f"{directory} holds several export files starting at change {first}: {sorted(found)}")
    return found[0] if found else None


def remove_temporary(directory: Path) -> list[str]:
    """Remove the temporary files left by killed exports (the caller holds the consumer's lock)."""
    left = [n for n in os.listdir(directory) if n.startswith(f".{FILE_PREFIX}") and n.endswith(_TEMP_SUFFIX)]
    for name in left:
        (directory / name).unlink(missing_ok=True)
        log.warning("removed %s, left by an export that did not finish", name)
    return left


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_changes(cur: Any, directory: Path, after: int, upto: int) -> Path:
    """Write the changes ``after < change_id <= upto`` to their file: temporary name, fsync, rename, fsync."""
    final = directory / file_name(after + 1, upto)
    temp = directory / f".{final.name}.{os.getpid()}{_TEMP_SUFFIX}"
    with open(temp, "w", encoding="utf-8", newline="") as out:
        cur.copy_expert(cur.mogrify(_COPY_SQL, {"after": after, "upto": upto}).decode(), out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, final)
    _fsync_directory(directory)
    return final


def export_changes(cur: Any, consumer: str, directory: Path) -> ExportResult:
    """Export the changes after ``consumer``'s watermark to one file in ``directory``, in the caller's
    transaction, which must commit for the watermark to move (module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    before = watermark = lock_consumer(cur, consumer)
    remove_temporary(directory)
    adopted = []
    while (found := file_starting_at(directory, watermark + 1)) is not None:
        adopted.append(found[0])
        watermark = found[1]
        log.warning("consumer %s: adopted %s, written by an export killed before its commit", consumer, found[0])
    cur.execute(
        "SELECT max(change_id), count(*) FROM segmentation.segment_feed WHERE change_id > %s",
        (watermark,),
    )
    upto, rows = cur.fetchone()
    written = None
    if upto is not None:
        written = write_changes(cur, directory, watermark, int(upto)).name
        watermark = int(upto)
    if watermark != before:
        advance(cur, consumer, watermark)
    result = ExportResult(consumer, before, watermark, int(rows), written, adopted)
    log.info("consumer %s: %s", consumer, result.figures())
    return result
