"""The alerts page and its API: seeded alerts render newest first with their delivery, a pending approval links
to Airflow's Required actions page of its review, the kind filter and its empty state, and authentication."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from segmentation.db import connect
from tests.helpers import db_url, scalar

pytestmark = [pytest.mark.airflow, pytest.mark.db]

RUN = "manual__2026-12-03T23:00:00+00:00"
LINK = f"/dags/segmentation_retrain/runs/{quote(RUN, safe='')}/tasks/review/required_actions"
MARK = "alerts-page-test"


def execute(sql: str, params: tuple = ()) -> None:
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(sql, params)


def add_alert(kind: str, message: str, *, run_id: str | None, minutes_ago: int, delivered: bool,
              details: dict | None = None, dag_id: str | None = None) -> None:  # fmt: skip
    execute(
        """INSERT INTO segmentation.alerts (raised_at, kind, dag_id, run_id, task_id, message, details, delivered,
                                            delivery)
           VALUES (now() - make_interval(mins => %s), %s, %s, %s, 'promote', %s, %s, %s, %s)""",
        (minutes_ago, kind, dag_id, run_id, f"{MARK}: {message}", json.dumps(details or {}), delivered,
         "sent" if delivered else "not sent: no connection segmentation_alerts"),
    )  # fmt: skip


@pytest.fixture
def seeded(scored_db: str) -> Iterator[int]:
    """Three alerts, the newest an approval_pending of the newest candidate held for review in a retrain run."""
    version = int(scalar("SELECT max(version) FROM segmentation.model_versions WHERE status = 'candidate'"))
    execute(
        "INSERT INTO segmentation.pipeline_runs (run_id, dag_id) VALUES (%s, 'segmentation_retrain') "
        "ON CONFLICT (run_id) DO NOTHING",
        (RUN,),
    )
    execute("UPDATE segmentation.model_versions SET review_run_id = %s WHERE version = %s", (RUN, version))
    add_alert("failed_run", "oldest failure", run_id="scheduled__x", minutes_ago=30, delivered=False,
              dag_id="segmentation_nightly")  # fmt: skip
    add_alert("drift_retrain", "drift asked for a retrain", run_id="scheduled__y", minutes_ago=20, delivered=True,
              dag_id="segmentation_nightly")  # fmt: skip
    add_alert("approval_pending", f"v{version} awaits approval", run_id=RUN, minutes_ago=1, delivered=True,
              details={"version": version}, dag_id="segmentation_retrain")  # fmt: skip
    try:
        yield version
    finally:
        execute("DELETE FROM segmentation.alerts WHERE message LIKE %s", (f"{MARK}:%",))
        execute(
            "UPDATE segmentation.model_versions SET review_run_id = NULL, reviewed_by = NULL, review_comment = NULL "
            "WHERE version = %s",
            (version,),
        )
        execute("DELETE FROM segmentation.pipeline_runs WHERE run_id = %s", (RUN,))


def rows_of(page: str) -> list[str]:
    table = page.split('id="alerts"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr class=\"kind-[^\"]+\">(.*?)</tr>", table, flags=re.S)


def test_seeded_alerts_render_newest_first_with_delivery_and_the_required_action(as_user, seeded: int) -> None:
    page = as_user("viewer").get("/segmentation/alerts")
    assert page.status_code == 200
    ours = [html.unescape(r) for r in rows_of(page.text) if MARK in html.unescape(r)]
    assert [next(k for k in ("approval_pending", "drift_retrain", "failed_run") if k in r) for r in ours] == [
        "approval_pending", "drift_retrain", "failed_run"]  # fmt: skip
    pending, drift, failed = ours
    assert RUN in pending and "segmentation_retrain" in pending and "promote" in pending
    assert re.search(rf'class="required-action" href="[^"]*{re.escape(LINK)}"', pending)
    assert f"v{seeded} awaits approval</strong>" in pending
    assert re.search(r"<td>yes</td>\s*$", drift.strip()) and "segmentation_nightly" in drift
    assert "<td>no" in failed and "not sent: no connection" in failed and "required-action" not in failed
    assert 'href="/segmentation/alerts"' in page.text  # linked from the navigation


def test_the_link_goes_once_the_version_is_reviewed(as_user, seeded: int) -> None:
    execute("UPDATE segmentation.model_versions SET reviewed_by = 'admin' WHERE version = %s", (seeded,))
    page = as_user("viewer").get("/segmentation/alerts").text
    assert "awaits approval" in page  # the alert's message stays
    assert LINK not in page and "required-action" not in page


def test_api_lists_the_alerts_with_the_review_path_and_filters_by_kind(as_user, seeded: int) -> None:
    data = as_user("viewer").get("/segmentation/api/alerts").json()
    ours = [a for a in data["alerts"] if a["message"].startswith(MARK)]
    assert [a["kind"] for a in ours] == ["approval_pending", "drift_retrain", "failed_run"]
    assert ours[0]["review_path"] == LINK and ours[0]["awaiting_approval"] is True
    assert ours[0]["version"] == str(seeded) and ours[0]["delivered"] is True
    assert ours[1]["review_path"] is None and ours[2]["delivered"] is False
    only = as_user("viewer").get("/segmentation/api/alerts", params={"kind": "drift_retrain"}).json()
    assert only["alerts"] and {a["kind"] for a in only["alerts"]} == {"drift_retrain"}
    newest = as_user("viewer").get("/segmentation/api/alerts", params={"limit": 1}).json()["alerts"]
    assert [a["message"] for a in newest] == [ours[0]["message"]]


def test_an_unknown_kind_is_refused_naming_the_allowed_ones(as_user, seeded: int) -> None:
    answer = as_user("viewer").get("/segmentation/api/alerts", params={"kind": "<b>nope</b>"})
    assert answer.status_code == 422 and "approval_pending" in answer.json()["detail"]
    page = as_user("viewer").get("/segmentation/alerts", params={"kind": "<b>nope</b>"})
    assert page.status_code == 422 and "choose one of" in page.text and "<b>nope</b>" not in page.text
    assert as_user("viewer").get("/segmentation/api/alerts", params={"limit": 0}).status_code == 422


def test_empty_state_when_no_alert_of_the_kind(as_user, scored_db: str) -> None:
    assert scalar("SELECT count(*) FROM segmentation.alerts WHERE kind = 'batch_refused'") == 0
    page = as_user("viewer").get("/segmentation/alerts", params={"kind": "batch_refused"}).text
    assert 'id="no-alerts"' in page and "No alerts of kind batch_refused" in page and 'id="alerts"' not in page
    assert as_user("viewer").get("/segmentation/api/alerts", params={"kind": "batch_refused"}).json()["alerts"] == []


def test_alerts_need_an_airflow_login_with_read_permission(client, as_user, tokens, seeded: int) -> None:
    page = client.get("/segmentation/alerts", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=")
    assert client.get("/segmentation/api/alerts").status_code == 401
    for response in (
        as_user("no_role").get("/segmentation/alerts"),
        client.get("/segmentation/api/alerts", headers={"Authorization": f"Bearer {tokens['no_role']}"}),
    ):
        assert response.status_code == 403 and MARK not in response.text  # fmt: skip
    bearer = client.get("/segmentation/api/alerts", headers={"Authorization": f"Bearer {tokens['viewer']}"})
    assert bearer.status_code == 200
