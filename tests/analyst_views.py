"""Stand-ins for the analyst views that sql/015 creates, for as long as that migration is not in ``sql/``.

They have exactly the columns agreed for sql/015, and 016's statements are applied again after them so their
comments land. Once sql/015 is present, :func:`ensure_analyst_views` changes nothing and the real views are
checked: a column that differs from the agreement then fails the data dictionary and comment tests.
"""

from __future__ import annotations

import re

from segmentation.config import DEFAULT_SQL_DIR
from segmentation.db import connect

STAND_INS = {
    "segment_transitions": """CREATE VIEW segmentation.segment_transitions AS
        SELECT NULL::text AS run_id, NULL::char(1) AS from_segment, NULL::char(1) AS to_segment, NULL::text AS cause,
               NULL::bigint AS customers
        WHERE false""",
    "segment_feed": """CREATE VIEW segmentation.segment_feed AS
        SELECT NULL::bigint AS change_id, NULL::bigint AS customer_id, NULL::char(1) AS segment,
               NULL::char(1) AS previous_segment, NULL::text AS event, NULL::integer AS model_version,
               NULL::text AS run_id, NULL::timestamptz AS changed_at, NULL::bigint AS history_id
        WHERE false""",
}
COMMENTS_MIGRATION = "016_realised_quality_and_comments.sql"


def defined_by_migrations(view: str) -> bool:
    """Whether a migration in sql/ creates ``segmentation.<view>``."""
    creates = re.compile(rf"create\s+(or\s+replace\s+)?(materialized\s+)?view\s+segmentation\.{view}\b", re.I)
    return any(creates.search(p.read_text()) for p in sorted(DEFAULT_SQL_DIR.glob("0*.sql")))


def ensure_analyst_views(url: str) -> list[str]:
    """Create the stand-ins no migration defines, then re-apply the comments; returns the views stood in for."""
    missing = [view for view in STAND_INS if not defined_by_migrations(view)]
    if missing:
        with connect(url) as conn, conn.cursor() as cur:
            for view in missing:
                cur.execute(STAND_INS[view])
            cur.execute((DEFAULT_SQL_DIR / COMMENTS_MIGRATION).read_text())
    return missing
