"""Segment transitions (overview) and realised quality (quality page), their JSON API, bad requests, empty
states and permissions, through FastAPI's TestClient with real Airflow tokens, on databases seeded with known
rows (``insights_tables.sql`` provides the three relations the pages read)."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from segmentation.ui.insights import NO_LABELS
from tests.conftest import create_database, drop_database

pytestmark = [pytest.mark.airflow, pytest.mark.db]

TABLES_SQL = Path(__file__).with_name("insights_tables.sql")
# Whatever the migrations made of the three names (table or view) is dropped in this module's own databases
# before TABLES_SQL creates them, so the expected figures depend only on the rows a test inserts.
REPLACE_SQL = """
DO $$
DECLARE
    name text;
    kind "char";
BEGIN
    FOREACH name IN ARRAY ARRAY['segment_transitions', 'realised_quality', 'realised_quality_daily'] LOOP
        SELECT c.relkind INTO kind FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = 'segmentation' AND c.relname = name;
        IF kind IN ('v', 'm') THEN
            EXECUTE format('DROP %s segmentation.%I CASCADE',
                           CASE kind WHEN 'v' THEN 'VIEW' ELSE 'MATERIALIZED VIEW' END, name);
        ELSIF kind IS NOT NULL THEN
            EXECUTE format('DROP TABLE segmentation.%I CASCADE', name);
        END IF;
        kind := NULL;
    END LOOP;
END
$$;
"""
RUN_PAGE = "/segmentation/"
TRANSITIONS = "/segmentation/api/transitions"
REALISED = "/segmentation/api/realised-quality"

SEED = """
INSERT INTO segmentation.model_versions (version, status, model_name, metrics, sha256, artifact) VALUES
    (1, 'retired', 'logistic_regression', '{"accuracy": 0.50}', repeat('a', 64), '\\x00'),
    (2, 'champion', 'hist_gradient_boosting', '{"accuracy": 0.56}', repeat('b', 64), '\\x00');
INSERT INTO segmentation.pipeline_runs (run_id, dag_id, started_at, finished_at, status, model_version, steps) VALUES
    ('night-1', 'segmentation_nightly', '2026-11-20 02:00+00', '2026-11-20 02:10+00', 'success', 1,
     '{"finalise": {"rows": 17}}'),
    ('night-2', 'segmentation_nightly', '2026-11-27 02:00+00', '2026-11-27 02:10+00', 'success', 2,
     '{"finalise": {"rows": 21}}'),
    -- later, but not a finished scoring run: a retrain, and a failed night
    ('retrain-3', 'segmentation_retrain', '2026-11-28 09:00+00', '2026-11-28 09:30+00', 'success', 2,
     '{"train": {"rows": 100}}'),
    ('night-4', 'segmentation_nightly', '2026-11-29 02:00+00', '2026-11-29 02:05+00', 'failed', 2, '{}');
INSERT INTO segmentation.segment_transitions (run_id, from_segment, to_segment, cause, customers) VALUES
    ('night-1', NULL, 'A', 'new', 10), ('night-1', NULL, 'B', 'new', 7),
    ('night-2', NULL, 'C', 'new', 5), ('night-2', 'A', 'B', 'model', 4), ('night-2', 'A', 'B', 'attributes', 1),
    ('night-2', 'B', 'C', 'both', 2), ('night-2', 'C', 'A', 'attributes', 3), ('night-2', 'D', 'A', 'model', 6);
INSERT INTO segmentation.segment_history
    (history_id, customer_id, previous_segment, segment, model_version, run_id, changed_at) VALUES
    (1, 1, NULL, 'A', 1, 'h', '2026-11-01 10:00+00'), (2, 1, 'A', 'B', 2, 'h', '2026-11-10 10:00+00'),
    (3, 2, NULL, 'A', 1, 'h', '2026-11-01 10:00+00'),
    (4, 3, NULL, 'B', 1, 'h', '2026-11-05 23:59:59+00'), (5, 3, 'B', 'C', 2, 'h', '2026-11-12 23:59:59+00'),
    (6, 4, NULL, 'C', 1, 'h', '2026-11-06 00:00:00+00'),
    (7, 5, NULL, 'D', 1, 'h', '2026-11-01 10:00+00'), (8, 5, 'D', 'A', 2, 'h', '2026-11-13 00:00:00+00'),
    (9, 6, NULL, 'A', 1, 'h', '2026-11-01 10:00+00'), (10, 6, 'A', 'B', 1, 'h', '2026-11-03 10:00+00'),
    (11, 6, 'B', 'C', 1, 'h', '2026-11-04 10:00+00'), (12, 6, 'C', 'D', 2, 'h', '2026-11-08 10:00+00'),
    (13, 6, 'D', 'C', 2, 'h', '2026-11-11 10:00+00'),
    (14, 7, NULL, 'A', 1, 'h', '2026-11-02 10:00+00'), (15, 7, 'A', 'B', 1, 'h', '2026-11-02 10:00+00'),
    (16, 8, NULL, 'D', 1, 'h', '2026-11-06 00:30:00+01');
INSERT INTO segmentation.realised_quality VALUES
    (1, 400, 0.48, 0.45, 1.2, '2026-11-01 00:00+00', '2026-11-20 23:59+00'),
    (2, 250, 0.53, 0.50, NULL, '2026-11-20 00:00+00', '2026-12-01 23:59+00');
INSERT INTO segmentation.realised_quality_daily VALUES
    ('2026-11-18', 1, 100, 0.47, 0.44, 1.25), ('2026-11-19', 1, 150, 0.49, 0.46, 1.18),
    ('2026-11-20', 1, 150, 0.48, 0.45, 1.2),
    ('2026-11-21', 2, 50, 0.52, 0.49, NULL), ('2026-11-22', 2, 100, 0.55, 0.52, NULL),
    ('2026-11-24', 2, 100, 0.53, 0.50, NULL);
"""

# night-2, by hand from SEED: the cells that are not 0 (the run's causes summed).
NIGHT_2 = {("new", "C"): 5, ("A", "B"): 5, ("B", "C"): 2, ("C", "A"): 3, ("D", "A"): 6}
NIGHT_2_CAUSES = {"new": 5, "model": 10, "attributes": 4, "both": 2}
# 2026-11-05 .. 2026-11-12, by hand from SEED's history: customer 1 A->B; 2 A->A; 3 B (23:59:59 on the start
# day) -> C (23:59:59 on the end day); 4 has no segment at the start (first row at 00:00 the next day); 5 D -> D
# (its change is at 00:00 after the end day); 6 C -> D -> C; 7 two rows at the same moment, the later id (B)
# counts; 8's 00:30 at +01 is 23:30 UTC on the start day.
PERIOD = {("A", "B"): 1, ("A", "A"): 1, ("B", "C"): 1, ("D", "D"): 2, ("C", "C"): 1, ("B", "B"): 1}


def _prepared(prefix: str, seed: str | None, *, tables: bool = True) -> str:
    from segmentation.db import connect
    from segmentation.migrations import migrate

    url = create_database(prefix)
    migrate(url)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(REPLACE_SQL)
        if tables:
            cur.execute(TABLES_SQL.read_text())
        if seed:
            cur.execute(seed)
    return url


@pytest.fixture(scope="module")
def seeded_db() -> Iterator[str]:
    from segmentation.db import reset_url_cache

    url = _prepared("seg_insights", SEED)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SEGMENTATION_DATABASE_URL", url)
            reset_url_cache()
            yield url
    finally:
        reset_url_cache()
        drop_database(url)


@pytest.fixture(scope="module")
def empty_db() -> Iterator[str]:
    url = _prepared("seg_insights_empty", None)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="module")
def app(auth: object, seeded_db: str):
    from fastapi import FastAPI

    from segmentation.ui.app import create_app

    parent = FastAPI()
    parent.mount("/segmentation", create_app())
    return parent


@pytest.fixture
def viewer(app, tokens: dict[str, str]):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://localhost:8080") as client:
        client.cookies.set("_token", tokens["viewer"])
        yield client


@pytest.fixture
def anonymous(app):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://localhost:8080") as client:
        yield client


def page_cells(page: str, table_id: str) -> dict[tuple[str, str], int]:
    """The cells of a rendered heat-map table, each checked to show its own count."""
    assert f'id="{table_id}"' in page, table_id
    table = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    found = re.findall(r'data-from="([^"]+)" data-to="([A-D])" data-customers="(\d+)"[^>]*>([\d,]+)</td>', table)
    for _, _, n, shown in found:
        assert shown.replace(",", "") == n
    return {(f, t): int(n) for f, t, n, _ in found}


def api_cells(data: dict) -> dict[tuple[str, str], int]:
    assert all(set(c) == {"from", "to", "customers"} for line in data["cells"] for c in line)
    return {(c["from"], c["to"]): c["customers"] for line in data["cells"] for c in line}


def nonzero(cells: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    return {k: v for k, v in cells.items() if v}


# ---- the last run's matrix -----------------------------------------------------------------------------


def test_overview_shows_the_last_finished_scoring_runs_matrix(viewer) -> None:
    page = viewer.get(RUN_PAGE).text
    assert 'id="transitions-run">night-2<' in page  # not the later retrain, nor the failed night
    cells = page_cells(page, "run-transitions")
    assert len(cells) == 5 * 4  # rows new, A-D; columns A-D
    assert nonzero(cells) == NIGHT_2
    assert all(cells[(s, s)] == 0 for s in "ABCD")  # a run's transitions are changes only
    causes = dict(re.findall(r'data-cause="([a-z]+)">.*?<td class="num">(\d+)</td>', page))
    assert {k: int(v) for k, v in causes.items()} == NIGHT_2_CAUSES


def test_cells_are_shaded_by_their_count(viewer) -> None:
    page = viewer.get(RUN_PAGE).text
    table = page.split('id="run-transitions"', 1)[1].split("</table>", 1)[0]
    shades = {
        (f, t): (int(n), float(a))
        for f, t, n, a in re.findall(
            r'data-from="([^"]+)" data-to="([A-D])" data-customers="(\d+)" style="background-color: '
            r'rgba\(1, 124, 238, ([\d.]+)\)"',
            table,
        )
    }
    assert len(shades) == 20
    assert shades[("D", "A")][1] == 1.0  # the largest cell is the darkest
    assert shades[("A", "A")][1] == 0.0
    ordered = sorted(shades.values())
    assert [a for _, a in ordered] == sorted(a for _, a in ordered)  # more customers, never lighter


def test_the_cause_selector_filters_the_matrix(viewer) -> None:
    page = viewer.get(RUN_PAGE, params={"cause": "model"}).text
    assert nonzero(page_cells(page, "run-transitions")) == {("A", "B"): 4, ("D", "A"): 6}
    assert 'id="transitions-cause">model<' in page
    data = viewer.get(TRANSITIONS, params={"cause": "attributes"}).json()
    assert nonzero(api_cells(data)) == {("A", "B"): 1, ("C", "A"): 3}
    assert data["by_cause"] == NIGHT_2_CAUSES  # the breakdown stays whole


def test_transitions_api_of_the_last_run_and_of_a_named_run(viewer) -> None:
    data = viewer.get(TRANSITIONS).json()
    assert data["mode"] == "run" and data["run"]["run_id"] == "night-2"
    assert nonzero(api_cells(data)) == NIGHT_2
    assert data["total"] == sum(NIGHT_2.values()) and data["rows"] == ["new", "A", "B", "C", "D"]
    first = viewer.get(TRANSITIONS, params={"run_id": "night-1"}).json()
    assert nonzero(api_cells(first)) == {("new", "A"): 10, ("new", "B"): 7}
    assert first["by_cause"] == {"new": 17, "model": 0, "attributes": 0, "both": 0}
    missing = viewer.get(TRANSITIONS, params={"run_id": "no-such-run"})
    assert missing.status_code == 404 and missing.json() == {"detail": "no pipeline run with that run_id"}


# ---- the period matrix ---------------------------------------------------------------------------------


def test_the_period_matrix_is_each_customers_segment_at_both_dates(viewer) -> None:
    page = viewer.get(RUN_PAGE, params={"start": "2026-11-05", "end": "2026-11-12"})
    assert page.status_code == 200
    cells = page_cells(page.text, "period-transitions")
    assert len(cells) == 4 * 4 and nonzero(cells) == PERIOD
    assert "<strong>7</strong> customers,\n 2 of them in another segment" in page.text
    data = viewer.get(TRANSITIONS, params={"start": "2026-11-05", "end": "2026-11-12"}).json()
    assert data["mode"] == "period" and (data["start"], data["end"]) == ("2026-11-05", "2026-11-12")
    assert nonzero(api_cells(data)) == PERIOD and data["unchanged"] == 5


def test_the_period_form_is_not_computed_until_asked_and_offers_the_last_week(viewer) -> None:
    page = viewer.get(RUN_PAGE).text
    today = datetime.now(UTC).date()
    assert f'id="period-start" value="{today - timedelta(days=7)}"' in page
    assert f'id="period-end" value="{today}"' in page
    assert 'id="period-transitions"' not in page


def test_a_missing_date_takes_the_forms_default(viewer) -> None:
    # Up to today, everyone scored by 2026-11-05 is in their latest segment.
    data = viewer.get(TRANSITIONS, params={"start": "2026-11-05"}).json()
    assert data["end"] == datetime.now(UTC).date().isoformat()
    assert nonzero(api_cells(data)) == {("A", "B"): 1, ("A", "A"): 1, ("B", "C"): 1, ("D", "A"): 1,
                                        ("C", "C"): 1, ("B", "B"): 1, ("D", "D"): 1}  # fmt: skip


def test_the_period_matrix_matches_a_brute_force_over_random_history(viewer, monkeypatch) -> None:
    """Random histories (ties in changed_at included, ids in insertion order as the sequence gives them)
    against a plain Python reading of "the last row before the end of the day"."""
    from segmentation.db import connect

    rng = random.Random(25)
    base = datetime(2026, 10, 1, tzinfo=UTC)
    events = []
    for customer in range(1, 301):
        moments = sorted(base + timedelta(seconds=rng.randrange(0, 60 * 86400)) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.3:
            moments.append(moments[-1])  # two changes in one statement share now()
        events += [(m, customer, rng.choice("ABCD")) for m in moments]
    events.sort()
    url = _prepared("seg_insights_random", None)
    try:
        with connect(url) as conn, conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO segmentation.segment_history (history_id, customer_id, segment, model_version,
                   run_id, changed_at) VALUES (%s, %s, %s, 1, 'r', %s)""",
                [(i + 1, c, s, m) for i, (m, c, s) in enumerate(events)],
            )
        monkeypatch.setenv("SEGMENTATION_DATABASE_URL", url)
        for start, end in [("2026-10-10", "2026-10-20"), ("2026-10-15", "2026-10-15"), ("2026-09-01", "2026-11-30"),
                           ("2026-10-31", "2026-12-01"), ("2026-11-28", "2026-11-29")]:  # fmt: skip
            data = viewer.get(TRANSITIONS, params={"start": start, "end": end}).json()
            assert nonzero(api_cells(data)) == brute_force(events, date.fromisoformat(start), date.fromisoformat(end))
    finally:
        drop_database(url)


def brute_force(events: list, start: date, end: date) -> dict[tuple[str, str], int]:
    def at(customer: int, day: date) -> str | None:
        limit = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        rows = [s for m, c, s in events if c == customer and m < limit]  # events are in id order
        return rows[-1] if rows else None

    counts: dict[tuple[str, str], int] = {}
    for customer in {c for _, c, _ in events}:
        first, last = at(customer, start), at(customer, end)
        if first and last:
            counts[(first, last)] = counts.get((first, last), 0) + 1
    return counts


# ---- bad requests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"start": "2026-11-12", "end": "2026-11-05"},
            "the end date (2026-11-05) is before the start date (2026-11-12)",
        ),
        ({"start": "yesterday", "end": "2026-11-05"}, "the start date is not a date: use YYYY-MM-DD"),
        ({"start": "2026-11-01", "end": "2026-02-30"}, "the end date is not a date: use YYYY-MM-DD"),
        ({"start": "<script>alert(1)</script>"}, "the start date is not a date"),
    ],
)
def test_bad_dates_are_said_on_the_page_and_in_the_api(viewer, params: dict, message: str) -> None:
    page = viewer.get(RUN_PAGE, params=params)
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    error = re.search(r'id="period-error">([^<]+)<', page.text).group(1)
    assert error.startswith(message)
    assert 'id="period-transitions"' not in page.text
    assert nonzero(page_cells(page.text, "run-transitions")) == NIGHT_2  # the rest of the page is there
    assert "<script>alert(1)</script>" not in page.text
    api = viewer.get(TRANSITIONS, params=params)
    assert api.status_code == 422 and api.json()["detail"].startswith(message)


def test_an_unknown_cause_and_mixed_modes_are_refused_in_words(viewer) -> None:
    page = viewer.get(RUN_PAGE, params={"cause": "weather"})
    assert page.status_code == 422
    assert "the cause must be one of new, model, attributes, both" in page.text
    assert nonzero(page_cells(page.text, "run-transitions")) == NIGHT_2  # shown for all causes
    assert viewer.get(TRANSITIONS, params={"cause": "weather"}).status_code == 422
    mixed = viewer.get(TRANSITIONS, params={"run_id": "night-1", "start": "2026-11-01"})
    assert mixed.status_code == 422 and "not both" in mixed.json()["detail"]


# ---- realised quality ----------------------------------------------------------------------------------


def test_quality_page_tables_realised_against_holdout_accuracy(viewer) -> None:
    page = viewer.get("/segmentation/quality").text
    rows = re.findall(
        r'<tr class="realised-row" data-version="(\d+)">.*?class="num accuracy">([\d.]+)</td>\s*'
        r'<td class="num holdout">([\d.]+)</td>\s*<td class="num">([-+\d.]+)</td>',
        page,
        re.S,
    )
    assert rows == [("2", "0.5300", "0.5600", "-0.0300"), ("1", "0.4800", "0.5000", "-0.0200")]
    assert NO_LABELS not in page


def test_quality_page_draws_realised_accuracy_per_version_beside_its_holdout(viewer) -> None:
    page = viewer.get("/segmentation/quality").text
    svg = page.split('<svg id="realised-accuracy"', 1)[1].split("</svg>", 1)[0]
    series = dict(re.findall(r'<g class="series" data-version="(\d+)">(.*?)</g>', svg, re.S))
    assert set(series) == {"1", "2"}
    points = {v: [(float(x), float(y), d, float(a)) for x, y, d, a in re.findall(
        r'<circle cx="([\d.]+)" cy="([\d.]+)" r="3" fill="#[0-9a-f]+" data-day="([\d-]+)" data-accuracy="([\d.]+)"',
        body)] for v, body in series.items()}  # fmt: skip
    assert [(d, a) for _, _, d, a in points["1"]] == [("2026-11-18", 0.47), ("2026-11-19", 0.49),
                                                       ("2026-11-20", 0.48)]  # fmt: skip
    assert [(d, a) for _, _, d, a in points["2"]] == [("2026-11-21", 0.52), ("2026-11-22", 0.55),
                                                       ("2026-11-24", 0.53)]  # fmt: skip
    everything = points["1"] + points["2"]
    assert [x for x, *_ in everything] == sorted(x for x, *_ in everything)  # time runs left to right
    by_accuracy = sorted(everything, key=lambda p: p[3])
    assert [y for _, y, *_ in by_accuracy] == sorted((y for _, y, *_ in by_accuracy), reverse=True)  # higher is up
    for version, holdout in (("1", 0.50), ("2", 0.56)):
        line = re.search(r'<line class="holdout" x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)" y2="\1" stroke="#[0-9a-f]+" '
                         r'stroke-dasharray="6 4" data-accuracy="([\d.]+)"', series[version])  # fmt: skip
        assert float(line.group(2)) == holdout
        assert all(float(line.group(1)) < y for _, y, *_ in points[version])  # realised below the holdout here
    path = re.search(r'<path class="realised" d="([^"]+)"', series["2"]).group(1)
    assert path.count("M") == 2 and path.count("L") == 1  # no line across the day without labels


def test_realised_quality_api(viewer) -> None:
    data = viewer.get(REALISED).json()
    versions = [(v["model_version"], v["labelled"], v["accuracy"], v["holdout_accuracy"], v["status"])
                for v in data["versions"]]  # fmt: skip
    assert versions == [(2, 250, 0.53, 0.56, "champion"), (1, 400, 0.48, 0.50, "retired")]
    assert [(d["day"], d["model_version"], d["accuracy"]) for d in data["daily"]][:2] == [
        ("2026-11-18", 1, 0.47), ("2026-11-19", 1, 0.49)]  # fmt: skip
    assert len(data["daily"]) == 6 and data["holdout_accuracy"] == {"1": 0.5, "2": 0.56}
    assert data["empty"] is None


# ---- empty states --------------------------------------------------------------------------------------


def test_empty_database_says_so(viewer, empty_db: str, monkeypatch) -> None:
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", empty_db)
    page = viewer.get(RUN_PAGE, params={"start": "2026-11-01", "end": "2026-11-30"})
    assert page.status_code == 200
    assert 'id="no-transitions">No finished scoring run yet.' in page.text
    assert 'id="period-empty">No customer had a segment on both 2026-11-01 and 2026-11-30.' in page.text
    quality = viewer.get("/segmentation/quality").text
    assert f'id="no-late-labels">{NO_LABELS}<' in quality and "realised-accuracy" not in quality
    assert viewer.get(REALISED).json() == {"versions": [], "daily": [], "holdout_accuracy": {}, "empty": NO_LABELS}
    data = viewer.get(TRANSITIONS).json()
    assert data["run"] is None and data["total"] == 0


def test_a_database_without_the_tables_says_so_and_the_pages_still_work(viewer, monkeypatch) -> None:
    """The pages deployed before the migrations that add the three relations: their sections say what is
    missing, everything else on the pages is served, and the API answers 503 in words."""
    from segmentation.ui.insights import NOT_MIGRATED

    url = _prepared("seg_insights_old", SEED.split("INSERT INTO segmentation.segment_transitions")[0], tables=False)
    try:
        monkeypatch.setenv("SEGMENTATION_DATABASE_URL", url)
        page = viewer.get(RUN_PAGE, params={"start": "2026-11-01"})
        assert page.status_code == 200
        assert f'id="transitions-missing">{NOT_MIGRATED}<' in page.text and "Last nightly run" in page.text
        quality = viewer.get("/segmentation/quality")
        assert quality.status_code == 200 and f'id="realised-missing">{NOT_MIGRATED}<' in quality.text
        assert "Population stability index per input column" in quality.text  # the drift section is there
        for path in (TRANSITIONS, REALISED):
            answer = viewer.get(path)
            assert answer.status_code == 503 and answer.json() == {"detail": NOT_MIGRATED}
    finally:
        drop_database(url)


# ---- permissions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TRANSITIONS, f"{TRANSITIONS}?start=2026-11-01", REALISED])
def test_the_api_needs_a_login_with_read_permission(anonymous, tokens, path: str) -> None:
    assert anonymous.get(path).status_code == 401
    outsider = anonymous.get(path, headers={"Authorization": f"Bearer {tokens['no_role']}"})
    assert outsider.status_code == 403 and "night-2" not in outsider.text and "0.53" not in outsider.text
    assert anonymous.get(path, headers={"Authorization": f"Bearer {tokens['viewer']}"}).status_code == 200


def test_the_pages_send_an_anonymous_visitor_to_the_login(anonymous) -> None:
    for path in (f"{RUN_PAGE}?start=2026-11-05&end=2026-11-12", "/segmentation/quality"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/auth/login?next=")


def test_the_read_only_ui_login_is_enough(viewer, seeded_db: str, monkeypatch) -> None:
    """Everything here is a SELECT: a login in segmentation_ui (reads every table, writes none) sees it all."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    from segmentation.migrations import apply_roles
    from tests.conftest import admin_url

    apply_roles(seeded_db)
    user = f"seg_ui_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(admin_url())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE segmentation_ui").format(sql.Identifier(user)))
    try:
        monkeypatch.setenv("SEGMENTATION_DATABASE_URL", make_url(seeded_db).set(username=user).render_as_string())
        page = viewer.get(RUN_PAGE, params={"start": "2026-11-05", "end": "2026-11-12"})
        assert page.status_code == 200
        assert nonzero(page_cells(page.text, "period-transitions")) == PERIOD
        assert viewer.get("/segmentation/quality").status_code == 200
        assert viewer.get(REALISED).json()["versions"][0]["model_version"] == 2
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
        admin.close()
