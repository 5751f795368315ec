"""What an operator does and sees, in a real browser against the real api-server: with approval required, a
forced retrain (``dag.test()`` in a child process on the same databases) holds its challenger; the alerts page
shows the ``approval_pending`` alert; the models page links to Airflow's Required actions page of the review,
where the admin reads the challenger-against-champion figures, types a comment and approves; the run then
promotes the version as the admin. Last, Airflow's Assets view with the chain of the pipeline's assets.

Screenshots as in ``test_browser``: ``approval-request``, ``alerts`` and ``assets-lineage`` also replace
``docs/img/`` with ``SEGMENTATION_UPDATE_DOCS_IMG=1``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import execute, query, scalar
from tests.retrain_child import Background, awaiting_review
from tests.ui.test_browser import ARTIFACTS, _shot, api_server, browser, signed_in  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.airflow, pytest.mark.db]

FORCED = {"force_promote": True, "cv_folds": 2, "candidates": ["logistic_regression"], "row_cap": 0}
COMMENT = "Checked the shares and the holdout figures: better on segment D"
SEGMENTS_ASSET = "segmentation.customer_segments"


@pytest.fixture
def retrain(scored_db: str, api_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Background]:  # noqa: F811
    """A forced retrain with approval required, running in a child process until its review is answered."""
    monkeypatch.setenv("SEGMENTATION_PROMOTION_APPROVAL", "required")
    started = Background(FORCED, tmp_path / "retrain.log")
    try:
        yield started
    finally:
        started.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "operating-retrain.log").write_bytes(started.log.read_bytes())


@pytest.fixture
def earlier_alerts(scored_db: str) -> Iterator[list[int]]:
    """Two earlier alerts of other kinds, so that the alerts page has more than the approval to show: the
    ``deadline_missed`` alert that the nightly DAG's deadline callback raises (``freshness.alert_missed_deadline``)
    for a planted run that committed start and clean only, and a refused batch through ``alerts.raise_alert``;
    removed afterwards, with the planted run."""
    from segmentation import alerts, freshness
    from segmentation.config import get_settings

    settings = get_settings()
    late_run = "scheduled__2026-12-03T02:00:00+00:00"
    execute(
        """INSERT INTO segmentation.pipeline_runs (run_id, dag_id, started_at, status, steps)
           VALUES (%s, 'segmentation_nightly', '2026-12-03T02:00:05+00:00', 'running',
                   '{"start": {}, "clean": {"rows": 1200}}')""",
        (late_run,),
    )
    before = int(scalar("SELECT coalesce(max(alert_id), 0) FROM segmentation.alerts"))
    step = freshness.alert_missed_deadline(
        late_run, "segmentation_nightly", "2026-12-03T06:00:04+00:00", 4.0, url=scored_db, settings=settings
    )
    assert step.startswith("features")
    alerts.raise_alert(
        "batch_refused",
        "batch refused: 41.0 % of the rows failed validation (at most 20 % allowed)",
        run_id="scheduled__2026-12-02T02:00:00+00:00", dag_id="segmentation_nightly", task_id="clean",
        url=scored_db, settings=settings,
    )  # fmt: skip
    ids = [int(row[0]) for row in query("SELECT alert_id FROM segmentation.alerts WHERE alert_id > %s", (before,))]
    assert len(ids) == 2
    try:
        yield ids
    finally:
        execute("DELETE FROM segmentation.alerts WHERE alert_id = ANY(%s)", (ids,))
        execute("DELETE FROM segmentation.pipeline_runs WHERE run_id = %s", (late_run,))


def champion() -> int:
    return int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))


def review_row(version: int) -> tuple:
    return tuple(
        scalar(f"SELECT {column} FROM segmentation.model_versions WHERE version = %s", (version,))
        for column in ("status", "reviewed_by", "review_comment")
    )


def _dump(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.html").write_text(page.content())


def test_approve_a_challenger_in_airflows_required_actions(
    api_server: str,  # noqa: F811
    browser,  # noqa: F811
    earlier_alerts: list[int],
    retrain: Background,
) -> None:
    before = champion()
    run_id = awaiting_review(retrain)
    version = int(scalar("SELECT max(version) FROM segmentation.model_versions"))
    assert version != before and review_row(version) == ("candidate", None, None)

    with signed_in(browser, api_server, "/segmentation/alerts", "admin") as page:
        # The alerts page: the approval_pending alert of this run, newest first, linking to the review.
        pending = page.locator("#alerts tr.kind-approval_pending", has_text=run_id)
        assert pending.count() == 1
        assert f"model version {version}" in pending.inner_text()
        assert f"v{version} awaits approval" in pending.inner_text()
        assert "/tasks/review/required_actions" in pending.locator("a.required-action").get_attribute("href")
        assert page.locator("#alerts tbody tr").first.inner_text() == pending.inner_text()
        late = page.locator("#alerts tr.kind-deadline_missed", has_text="scheduled__2026-12-03T02:00:00+00:00")
        assert "step still running: features" in late.inner_text()
        assert page.locator("#alerts tr.kind-batch_refused").count() >= 1
        _shot(page, "alerts", docs=True)

        # The models page marks the version and links to Airflow's Required actions page of its review.
        page.goto(f"{api_server}/segmentation/models")
        row = page.locator("table.registry tr", has_text=f"v{version}").first
        assert "awaiting approval" in row.inner_text()
        row.get_by_role("link", name="approve or reject in Airflow").click()
        page.wait_for_url(re.compile(r"/dags/segmentation_retrain/runs/.+/tasks/review/required_actions"))
        page.set_viewport_size({"width": 1400, "height": 1900})  # the whole review body, without inner scrolling
        approve = page.get_by_role("button", name="Approve")
        try:
            approve.wait_for()
        except Exception:
            _dump(page, "approval-request")
            raise
        body = page.locator("body").inner_text()
        assert f"Model version {version}" in body, body[:3000]
        assert "Macro-F1" in body and "Segment shares" in body
        assert f"v{before}" in body or f"version {before}" in body  # the champion it is compared with
        comment = page.get_by_role("textbox").first
        comment.fill(COMMENT)
        _shot(page, "approval-request", docs=True)
        approve.click()

        outcome = retrain.result()
        assert outcome.state == "success", retrain.log.read_text()[-3000:]
        assert outcome.run_id == run_id
        assert champion() == version
        assert review_row(version) == ("champion", "admin", COMMENT)

        # Afterwards the alert stays, without the link (nothing awaits approval any more).
        page.goto(f"{api_server}/segmentation/alerts")
        done = page.locator("#alerts tr.kind-approval_pending", has_text=run_id)
        assert done.count() == 1 and done.locator("a.required-action").count() == 0


def test_assets_view_shows_the_chain_of_the_pipelines_assets(api_server: str, browser) -> None:  # noqa: F811
    """Airflow's Assets list has every asset the DAGs declare; the graph of the segments asset shows the chain
    through the DAGs that produce and consume it, down to the CRM export (more assets only add nodes)."""
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        assets = dict(session.execute(select(AssetModel.name, AssetModel.id)).all())
    assert {"segmentation.customers", SEGMENTS_ASSET} <= set(assets), assets
    with signed_in(browser, api_server, "/assets", "viewer", width=1600) as page:
        for name in assets:
            if name.startswith("segmentation."):
                page.get_by_text(name, exact=True).first.wait_for()

        page.goto(f"{api_server}/assets/{assets[SEGMENTS_ASSET]}")
        nodes = page.locator(".react-flow__node")
        try:
            nodes.filter(has_text=SEGMENTS_ASSET).first.wait_for()
        except Exception:
            _dump(page, "assets-lineage")
            _shot(page, "assets-lineage-failed")
            raise
        page.wait_for_load_state("networkidle")
        texts = " ".join(nodes.all_inner_texts())
        # Customers (announced by a loader) schedule the nightly run, which produces the features and the
        # segments; the segments schedule the CRM export, which produces its own asset.
        chain = (
            "segmentation.customers",
            "segmentation_nightly",
            "segmentation.customer_features",
            SEGMENTS_ASSET,
            "segmentation_crm_export",
            "segmentation.crm_export",
        )
        for expected in chain:
            assert expected in texts, texts
        _shot(page, "assets-lineage", docs=True)
