"""A real browser against the real Airflow api-server with this plugin, over a database scored by the nightly
pipeline: log in through Airflow's login page, open "Segmentation" from Airflow's navigation, read the
overview, submit the what-if form and open a customer page (reading their reasons), and follow Retrain to
Airflow's trigger form for segmentation_retrain. Screenshots are saved as test artifacts
(``SEGMENTATION_TEST_ARTIFACTS``, default ``.data/test-artifacts/ui``); with ``SEGMENTATION_UPDATE_DOCS_IMG=1``
the page screenshots also replace ``docs/img/``.

Uses Debian's ``chromium`` (``/usr/bin/chromium``) driven by Playwright; Playwright never downloads a browser.
Skipped when Chromium is absent, unless ``SEGMENTATION_REQUIRE_BROWSER=1`` (as ``.ci/run`` sets), which makes
its absence a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from segmentation.columns import ATTRIBUTE_COLUMNS
from tests.helpers import scalar
from tests.ui.conftest import JWT_SECRET, ROOT, USERS

pytestmark = [pytest.mark.airflow, pytest.mark.db]

CHROMIUM = Path(os.environ.get("SEGMENTATION_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "segmentation-browser-test"
ARTIFACTS = Path(os.environ.get("SEGMENTATION_TEST_ARTIFACTS", ROOT / ".data" / "test-artifacts" / "ui"))
DOCS_IMG = ROOT / "docs" / "img"


def _require_browser() -> None:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is absent (apt-get install -y chromium)"
        if os.environ.get("SEGMENTATION_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"playwright is not installed: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the api-server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"the api-server did not answer {url} within {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def api_server(airflow_env: str, airflow_db: None, scored_db: str, dagbag, tmp_path_factory) -> Iterator[str]:
    """``airflow api-server`` with the plugins folder and this project's DAGs known to Airflow (as the DAG
    processor leaves them), in its own session; yields its base URL."""
    _require_browser()
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dagbag, "dags-folder", None)
    folder = tmp_path_factory.mktemp("api-server")
    passwords = folder / "passwords.json"
    passwords.write_text(json.dumps({"admin": PASSWORD, "viewer": PASSWORD, "editor": PASSWORD}))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "SEGMENTATION_DATABASE_URL": scored_db,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__PORT": str(port),
    }
    log = folder / "api-server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "api-server", "--port", str(port), "--workers", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_for(f"{base}/api/v2/monitor/health", proc, log)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / "api-server.log")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _shot(page, name: str, *, docs: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("SEGMENTATION_UPDATE_DOCS_IMG") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMG / f"{name}.png")


@contextmanager
def signed_in(
    browser, base: str, path: str, user: str, *, width: int = 1400, shot: str | None = None
) -> Iterator[object]:
    """A page of a fresh browser context: an anonymous visit to `path` goes to Airflow's login page, and
    signing in as `user` comes back to `path`. `shot` names a screenshot of the filled login form."""
    context = browser.new_context(viewport={"width": width, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{base}{path}")
        page.wait_for_url(re.compile(r"/auth/login"))
        page.locator("input[name=username]").fill(user)
        page.locator("input[name=password]").fill(PASSWORD)
        if shot:
            _shot(page, shot)
        page.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(re.escape(path.rstrip("/")) + r"/?$"))
        yield page
    finally:
        context.close()


def _read_reasons(rows) -> None:
    """The reasons table: five rows, each an attribute among the nine with a signed effect in points."""
    rows.first.wait_for()
    assert rows.count() == 5
    attribute = rows.first.get_attribute("data-attribute")
    assert attribute in ATTRIBUTE_COLUMNS
    assert rows.first.locator("th").inner_text() == attribute
    assert re.fullmatch(r"[+-]\d+\.\d points", rows.first.locator("td.effect").inner_text())


def test_log_in_open_segmentation_from_the_nav_what_if_and_a_customer(api_server: str, browser) -> None:
    with signed_in(browser, api_server, "/segmentation/", "admin", shot="airflow-login") as page:
        assert page.locator("tr.segment-row").count() == 4

        # 2. From Airflow's own home page, the "Segmentation" entry of the navigation opens the plugin.
        page.goto(f"{api_server}/")
        page.get_by_role("link", name="Segmentation").or_(page.get_by_role("button", name="Segmentation")).first.click()
        frame = page.frame_locator("iframe").first
        rows = frame.locator("tr.segment-row")
        rows.first.wait_for()
        assert rows.count() == 4
        shares = [float(t.replace("%", "").strip()) for t in frame.locator("tr.segment-row td.share").all_inner_texts()]
        assert [s for s in frame.locator("tr.segment-row").evaluate_all("rs => rs.map(r => r.dataset.segment)")] == [
            "A", "B", "C", "D"]  # fmt: skip
        assert sum(shares) == pytest.approx(100.0, abs=0.3)
        _shot(page, "airflow-nav-segmentation")

        # 3. The what-if form, inside Airflow's page: submit a customer, read the segment and its description.
        frame.get_by_role("link", name="What-if").click()
        frame.locator("#f-age").fill("38")
        frame.locator("#f-gender").select_option("Female")
        frame.locator("#f-profession").select_option("Artist")
        frame.locator("#f-spending_score").select_option("Average")
        frame.locator("#predict").click()
        segment = frame.locator("#result-segment").inner_text()
        assert segment in {"A", "B", "C", "D"}
        assert frame.locator("#result-description").inner_text().startswith(f"Segment {segment} (")
        assert "imputed by the model" in frame.locator("#imputed").inner_text()
        _read_reasons(frame.locator("#result-reasons tr.reason"))

        # 4. A customer page, through the lookup form.
        customer_id = scalar("SELECT min(customer_id) FROM segmentation.customer_segments")
        frame.locator("input[name=id]").fill(str(customer_id))
        frame.get_by_role("button", name="Open").click()
        expected = scalar("SELECT segment FROM segmentation.customer_segments WHERE customer_id = %s", (customer_id,))
        assert frame.locator("#customer-segment").inner_text() == expected
        _read_reasons(frame.locator("#customer-reasons tr.reason"))

        # 5. Retrain: the models page's button opens segmentation_retrain in Airflow (Airflow 3.3 has no URL that
        # opens the trigger dialog itself); its Trigger button opens Airflow's trigger form with the Params.
        frame.get_by_role("link", name="Models").click()
        frame.locator("#retrain").click()
        page.wait_for_url(re.compile(r"/dags/segmentation_retrain/?$"))
        page.get_by_test_id("trigger-dag-button").click()
        page.get_by_test_id("trigger-dag-submit").wait_for()
        assert page.get_by_role("dialog").get_by_text("Trigger Dag").first.is_visible()
        _shot(page, "airflow-retrain-trigger-form")

        # 5b. Promote from the models page: the api-server asks its own REST API, as this user, for a run of
        # segmentation_promote; the page says so and lists the pending run with its link into Airflow.
        target = scalar("SELECT max(version) FROM segmentation.model_versions WHERE status <> 'champion'")
        page.goto(f"{api_server}/segmentation/models")
        row = page.locator("table.registry tr", has_text=f"v{target}").first
        row.locator("input[name=confirm]").check()
        row.locator("form.promote button").click()
        page.locator("#done").wait_for()
        assert f"promotion of v{target} requested as run" in page.locator("#done").inner_text()
        pending = page.locator("#promotions tr", has_text=f"v{target}").first
        assert "pending" in pending.inner_text() and "admin" in pending.inner_text()
        assert "/dags/segmentation_promote/runs/" in pending.locator("a").get_attribute("href")
        _shot(page, "promotion-pending")

        # 6. Every page on its own, for the artifacts and the README.
        for name, path in [("overview", "/"), ("models", "/models"), ("quality", "/quality"),
                           ("what-if", "/what-if"), ("customer", f"/customers/{customer_id}")]:  # fmt: skip
            page.goto(f"{api_server}/segmentation{path}")
            page.wait_for_load_state("networkidle")
            if name == "what-if":
                page.locator("#f-age").fill("38")
                page.locator("#f-profession").select_option("Artist")
                page.locator("#predict").click()
                page.locator("#result-segment").wait_for()
            _shot(page, name, docs=True)


# ---- segment transitions and realised quality ----------------------------------------------------------


@pytest.fixture
def insight_rows(scored_db: str) -> Iterator[dict]:
    """The last scoring run's transitions, as the pipeline wrote them, and realised quality from late labels:
    labels that arrive now for up to 300 scored, unlabelled customers (every third one differing from the
    assigned segment), through ``customer_labels`` and its trigger, removed afterwards. Yields the expected
    cells, their total, and the number of daily points."""
    from segmentation.db import connect
    from segmentation.ui import insight_queries

    with connect(scored_db) as conn, conn.cursor() as cur:
        run_id = insight_queries.last_scoring_run(cur)["run_id"]
        cur.execute(
            """SELECT coalesce(from_segment, 'new'), to_segment, sum(customers) FROM segmentation.segment_transitions
               WHERE run_id = %s GROUP BY 1, 2""",
            (run_id,),
        )
        cells = {(f, t): int(n) for f, t, n in cur.fetchall()}
        cur.execute(
            """INSERT INTO segmentation.customer_labels (customer_id, segment)
               SELECT s.customer_id,
                      CASE WHEN row_number() OVER (ORDER BY s.customer_id) % 3 = 0
                           THEN CASE s.segment WHEN 'A' THEN 'B' ELSE 'A' END ELSE s.segment END
               FROM segmentation.customer_segments AS s
               WHERE NOT EXISTS (SELECT 1 FROM segmentation.customer_labels AS l WHERE l.customer_id = s.customer_id)
               ORDER BY s.customer_id LIMIT 300
               RETURNING customer_id"""
        )
        late = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT count(*) FROM segmentation.realised_quality_daily")
        days = int(cur.fetchone()[0])
    try:
        yield {"run_id": run_id, "cells": cells, "total": sum(cells.values()), "days": days, "late": len(late)}
    finally:
        with connect(scored_db) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM segmentation.label_outcomes WHERE customer_id = ANY(%s)", (late,))
            cur.execute("DELETE FROM segmentation.customer_labels WHERE customer_id = ANY(%s)", (late,))


def test_transition_heat_maps_and_the_realised_accuracy_chart_render(api_server: str, browser, insight_rows) -> None:
    with signed_in(browser, api_server, "/segmentation/", "viewer") as page:
        # The last scoring run's heat-map: 5 rows (new, A-D) by 4 columns, each cell showing its count.
        assert page.locator("#transitions-run").inner_text() == insight_rows["run_id"]
        cells = page.locator("#run-transitions td.cell")
        assert cells.count() == 20
        shown = cells.evaluate_all(
            "cs => cs.map(c => [c.dataset.from, c.dataset.to, c.innerText, getComputedStyle(c).backgroundColor])"
        )
        assert {(f, t): int(text.replace(",", "")) for f, t, text, _ in shown if text != "0"} == insight_rows["cells"]
        assert insight_rows["total"] > 0
        colours = {(f, t): colour for f, t, _, colour in shown}
        top = max(insight_rows["cells"], key=insight_rows["cells"].get)
        assert colours[top] == "rgb(1, 124, 238)"  # the largest cell in full colour
        assert colours[("A", "A")] == "rgba(1, 124, 238, 0)"  # an empty cell blank
        page.locator("#run-transitions").scroll_into_view_if_needed()
        _shot(page, "transitions")

        # The period form: from today to today, every scored customer is on the diagonal.
        today = datetime.now(UTC).date().isoformat()
        page.locator("#period-start").fill(today)
        page.locator("#period-end").fill(today)
        page.locator("#period-show").click()
        page.locator("#period-transitions").wait_for()
        period = page.locator("#period-transitions td.cell").evaluate_all(
            "cs => cs.map(c => [c.dataset.from, c.dataset.to, Number(c.dataset.customers)])"
        )
        assert len(period) == 16
        scored = scalar("SELECT count(DISTINCT customer_id) FROM segmentation.segment_history")
        assert sum(n for f, t, n in period if f == t) == scored
        assert all(n == 0 for f, t, n in period if f != t)

        # The quality page: the realised-accuracy chart, drawn by the server as SVG.
        page.goto(f"{api_server}/segmentation/quality")
        assert insight_rows["late"] > 0 and insight_rows["days"] >= 1
        chart = page.locator("svg#realised-accuracy")
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150
        assert page.locator("svg#realised-accuracy g.series").count() >= 1
        assert page.locator("svg#realised-accuracy circle").count() == insight_rows["days"]
        path = page.locator("svg#realised-accuracy path.realised").first
        assert path.get_attribute("d").startswith("M ")
        if insight_rows["days"] > 1:  # one day of labels is one point
            assert path.bounding_box()["width"] > 100
        assert page.locator("svg#realised-accuracy line.holdout").count() >= 1
        assert page.locator("#realised-quality tr.realised-row").count() >= 1
        _shot(page, "realised-quality")
