"""The models page marks a version that awaits approval and links to Airflow's Required actions page of its
review; once reviewed, it shows who decided and their comment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from segmentation.db import connect
from tests.helpers import db_url, scalar

pytestmark = [pytest.mark.airflow, pytest.mark.db]

RUN = "manual__2026-12-03T22:00:00+00:00"


def execute(sql: str, params: tuple = ()) -> None:
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(sql, params)


@pytest.fixture
def held(scored_db: str) -> Iterator[int]:
    """The newest candidate, held for review in a segmentation_retrain run (restored afterwards)."""
    version = int(scalar("SELECT max(version) FROM segmentation.model_versions WHERE status = 'candidate'"))
    execute(
        """INSERT INTO segmentation.pipeline_runs (run_id, dag_id) VALUES (%s, 'segmentation_retrain')
           ON CONFLICT (run_id) DO NOTHING""",
        (RUN,),
    )
    execute("UPDATE segmentation.model_versions SET review_run_id = %s WHERE version = %s", (RUN, version))
    try:
        yield version
    finally:
        execute(
            """UPDATE segmentation.model_versions
               SET review_run_id = NULL, reviewed_by = NULL, review_comment = NULL WHERE version = %s""",
            (version,),
        )
        execute("DELETE FROM segmentation.pipeline_runs WHERE run_id = %s", (RUN,))


def test_a_held_version_is_awaiting_approval_with_a_link_to_the_required_action(as_user, held: int) -> None:
    page = as_user("viewer").get("/segmentation/models").text
    assert page.count("awaiting approval</strong>") == 1
    link = f"/dags/segmentation_retrain/runs/{quote(RUN, safe='')}/tasks/review/required_actions"
    # Airflow's base (the page's mount point without /segmentation) followed by the required action's route.
    assert re.search(rf'class="required-action" href="[^"]*{re.escape(link)}"', page)
    api = as_user("viewer").get("/segmentation/api/models").json()
    shown = next(v for v in api["versions"] if v["version"] == held)
    assert shown["awaiting_approval"] and shown["review_path"] == link

    execute(
        "UPDATE segmentation.model_versions SET reviewed_by = 'ana', review_comment = 'shares move' WHERE version = %s",
        (held,),
    )
    page = as_user("viewer").get("/segmentation/models").text
    assert "awaiting approval</strong>" not in page and "reviewed by ana: “shares move”" in page
