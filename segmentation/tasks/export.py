"""The CRM export: the segment changes after the consumer's watermark, exactly once, to one CSV file."""

from __future__ import annotations

import logging
from typing import Any

from segmentation import feed
from segmentation.config import Settings
from segmentation.db import connect
from segmentation.tasks.runs import where

log = logging.getLogger(__name__)

CRM_CONSUMER = "crm"


def crm_export(
    *, consumer: str = CRM_CONSUMER, url: str | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """Export the feed's new changes for ``consumer`` into the export folder (``SEGMENTATION_EXPORT_DIR``).

    One transaction: the watermark moves only when the file is in place; a re-run exports nothing twice.
    """
    url, settings = where(url, settings)
    directory = settings.export_dir or settings.data_dir / "exports"
    with connect(url, settings) as conn, conn.cursor() as cur:
        result = feed.export_changes(cur, consumer, directory)
    return result.figures()
