"""Every PostgreSQL advisory-lock key the package takes, in one place, and the helper that takes them."""

from __future__ import annotations

from typing import Any

# Transaction-level advisory locks (released at commit or rollback). Keys are arbitrary but must not collide.
MIGRATION = 7_210_001  # migrations and roles, one at a time across processes
PROMOTION = 7_210_002  # champion changes, one at a time
SEGMENT_WRITE = 7_210_003  # an increment shard's history + upsert step, and the publish (diff + swap) of a full rescore
CLEAN = 7_210_004  # one cleaner at a time; an overlapping run waits and then finds nothing new

ALL_KEYS: dict[str, int] = {
    "migration": MIGRATION,
    "promotion": PROMOTION,
    "segment_write": SEGMENT_WRITE,
    "clean": CLEAN,
}


def xact_lock(cur: Any, key: int) -> None:
    """Wait for the advisory lock ``key``, held until the caller's transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
