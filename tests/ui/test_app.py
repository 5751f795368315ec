"""The Segmentation app through FastAPI's TestClient, on a real PostgreSQL scored by the nightly pipeline, with
real Airflow tokens from Airflow's auth manager."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from segmentation.columns import ATTRIBUTE_COLUMNS, SEGMENTS
from tests.helpers import db_url, model_key, query, scalar
from tests.ui.conftest import BAD_IDS

pytestmark = [pytest.mark.airflow, pytest.mark.db]

PAGES = ["/segmentation/", "/segmentation/models", "/segmentation/quality", "/segmentation/what-if",
         "/segmentation/customers/1", "/segmentation/api/docs"]  # fmt: skip
API_GETS = ["/segmentation/api/summary", "/segmentation/api/models", "/segmentation/api/quality",
            "/segmentation/api/customers/1", "/segmentation/api/openapi.json"]  # fmt: skip
VALID = {"gender": "Female", "ever_married": "Yes", "age": 38, "graduated": "Yes", "profession": "Artist",
         "work_experience": 1, "spending_score": "Average", "family_size": 3, "var_1": "Cat_6"}  # fmt: skip
HOSTILE = [
    "1 OR 1=1",
    "1; DROP TABLE segmentation.customers; --",
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
]


def champion_version() -> int:
    return int(scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'"))


# ---- authentication ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_an_anonymous_visitor_to_airflows_login(client, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/auth/login"), location
    assert "next=" in location


@pytest.mark.parametrize("path", API_GETS)
def test_api_refuses_an_anonymous_or_forged_caller(client, path: str) -> None:
    assert client.get(path).status_code == 401
    forged = client.get(path, headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code == 401
    client.cookies.set("_token", "eyJhbGciOiJIUzUxMiJ9.e30.forged")
    assert client.get(path).status_code == 401


def test_api_writes_refuse_an_anonymous_caller(client) -> None:
    assert client.post("/segmentation/api/predict", json=VALID).status_code == 401
    assert client.post(f"/segmentation/api/models/{champion_version()}/promote").status_code == 401


@pytest.mark.parametrize("path", API_GETS)
def test_api_accepts_a_bearer_token_and_the_ui_cookie(client, as_user, tokens, path: str) -> None:
    assert client.get(path, headers={"Authorization": f"Bearer {tokens['viewer']}"}).status_code == 200
    assert as_user("viewer").get(path).status_code == 200


def every_route(ui_app) -> list[tuple[str, str, bool]]:
    """(method, URL, is API) of every route of the mounted Segmentation app, with each path parameter (a model
    version, a customer id) set to 1; the static files are the one public mount and are left out."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    segmentation = next(r.app for r in ui_app.routes if isinstance(r, Mount) and r.path == "/segmentation")
    walked = []
    for route in segmentation.routes:
        if isinstance(route, Mount) and route.path == "/static":
            continue
        assert isinstance(route, APIRoute), f"{route.path} is not a route of the guarded routers"
        url = "/segmentation" + re.sub(r"\{[^}]+\}", "1", route.path)
        walked += [(method, url, route.path.startswith("/api/") and route.path != "/api/docs")
                   for method in sorted(route.methods)]  # fmt: skip
    return walked


def call(client, method: str, url: str, is_api: bool, **kwargs):
    """One request with a valid body for a POST (JSON for the API, the form for pages): the refusal must not
    depend on a body being absent."""
    if method == "POST":
        if is_api:
            kwargs["json"] = VALID
        else:
            kwargs["data"] = {**{k: str(v) for k, v in VALID.items()}, "csrf_token": "x" * 43, "confirm": "yes"}
    return client.request(method, url, follow_redirects=False, **kwargs)


WRITES_AND_LOOKUPS = {("GET", "/segmentation/customers"), ("POST", "/segmentation/what-if"),
                      ("POST", "/segmentation/models/1/promote"), ("POST", "/segmentation/api/models/1/promote"),
                      ("POST", "/segmentation/api/predict")}  # fmt: skip


def test_every_route_refuses_an_anonymous_caller(ui_app, client) -> None:
    """Anonymous: every API route answers 401, every page sends the visitor to Airflow's login."""
    routes = every_route(ui_app)
    walked = {(method, url) for method, url, _ in routes}
    assert {("GET", p) for p in PAGES + API_GETS} | WRITES_AND_LOOKUPS <= walked  # the walk is not vacuous
    for method, url, is_api in routes:
        response = call(client, method, url, is_api)
        if is_api:
            assert response.status_code == 401, (method, url, response.status_code)
            assert response.json()["detail"].startswith("Not authenticated"), (method, url)
        else:
            assert response.status_code == 303, (method, url, response.status_code)
            assert response.headers["location"].startswith("/auth/login?next="), (method, url)


def test_every_route_refuses_a_user_without_read_permission(ui_app, client, as_user, tokens) -> None:
    """A valid Airflow login whose role grants nothing (SimpleAuthManager: no role, no permission): 403 on every
    route, with the cookie of the Airflow UI and with a Bearer token, and nothing is done."""
    champion = champion_version()
    outsider = as_user("no_role")
    bearer = {"Authorization": f"Bearer {tokens['no_role']}"}
    for method, url, is_api in every_route(ui_app):
        for response in (call(outsider, method, url, is_api), call(client, method, url, is_api, headers=bearer)):
            assert response.status_code == 403, (method, url, response.status_code)
            assert "Airflow does not let outsider read segmentation_nightly" in response.text, (method, url)
            assert "Segment A (" not in response.text, (method, url)  # no data of the page or the API
    assert champion_version() == champion


def test_an_anonymous_what_if_submission_and_customer_lookup_go_to_the_login(client) -> None:
    form = {k: str(v) for k, v in VALID.items()}
    for response in (client.post("/segmentation/what-if", data=form, follow_redirects=False),
                     client.get("/segmentation/customers?id=1", follow_redirects=False)):  # fmt: skip
        assert response.status_code == 303
        assert response.headers["location"].startswith("/auth/login?next=")
        assert "segment" not in response.text.lower()


def test_reading_needs_the_read_permission_on_the_nightly_dag(as_user, client, tokens) -> None:
    refused = client.get("/segmentation/api/summary", headers={"Authorization": f"Bearer {tokens['no_role']}"})
    assert refused.status_code == 403
    assert refused.json() == {"detail": "Airflow does not let outsider read segmentation_nightly"}
    page = as_user("no_role").get("/segmentation/customers/1")
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "Airflow does not let outsider read segmentation_nightly" in page.text
    assert 'id="customer-segment"' not in page.text
    # The same routes answer a viewer, whose role may read the DAG.
    assert as_user("viewer").get("/segmentation/customers/1").status_code == 200


# ---- overview ------------------------------------------------------------------------------------------


def test_summary_api_has_four_shares_that_add_up_and_match_the_table(as_user) -> None:
    viewer = as_user("viewer")
    asked = datetime.now(UTC)
    data = viewer.get("/segmentation/api/summary").json()
    answered = datetime.now(UTC)
    counts = dict(query("SELECT segment, count(*) FROM segmentation.customer_segments GROUP BY 1"))
    assert {s["segment"]: s["customers"] for s in data["segments"]} == counts
    assert [s["segment"] for s in data["segments"]] == list(SEGMENTS)
    assert sum(s["share"] for s in data["segments"]) == pytest.approx(1.0, abs=1e-3)
    assert (
        data["customers_scored"]
        == sum(counts.values())
        == scalar("SELECT count(*) FROM segmentation.customers") - len(BAD_IDS)
    )
    assert data["run_id"] == "ui-night-2"  # the latest finished run
    assert [h["run_id"] for h in data["share_history"]] == ["ui-night-1", "ui-night-2"]
    # Freshness: the latest run's finish, and its age when the database answered (same machine, same clock).
    finished = scalar("SELECT finished_at FROM segmentation.pipeline_runs WHERE run_id = 'ui-night-2'")
    assert datetime.fromisoformat(data["freshness"]["last_success"]) == finished
    youngest, oldest = (asked - finished).total_seconds(), (answered - finished).total_seconds()
    assert youngest - 1.0 <= data["freshness"]["age_seconds"] <= oldest + 1.0, (youngest, oldest)
    run = data["last_nightly_run"]
    assert run["run_id"] == "ui-night-2" and run["status"] == "success"
    assert {s["step"] for s in run["step_rows"]} >= {"clean", "features", "plan", "score", "finalise"}
    assert data["quarantine"]["total"] == len(BAD_IDS)
    reasons = {r["reason"]: r["customers"] for r in data["quarantine"]["top_reasons"]}
    assert reasons == {"age_not_a_number": 2, "age_out_of_range": 3}
    for s in SEGMENTS:
        assert data["champion"]["descriptions"][s].startswith(f"Segment {s}")
    # Each attribute's buckets add up to the segment's size.
    for attribute in ATTRIBUTE_COLUMNS:
        per_segment = data["distributions"][attribute]
        assert {s: sum(b.values()) for s, b in per_segment.items()} == counts, attribute


def test_overview_page_shows_the_segments_run_quarantine_and_charts(as_user) -> None:
    response = as_user("viewer").get("/segmentation/")
    assert response.status_code == 200
    page = response.text
    rows = re.findall(r'data-segment="([A-D])">.*?class="num share">([0-9.]+) %', page, re.S)
    assert [r[0] for r in rows] == list(SEGMENTS)
    assert sum(float(r[1]) for r in rows) == pytest.approx(100.0, abs=0.3)
    assert "age_out_of_range" in page and "ui-night-2" in page
    assert 'data-chart="share-history"' in page and 'data-chart="dist-profession"' in page
    assert "/segmentation/static/chart.umd.min.js" in page and "cdn" not in page.lower()
    description = scalar(
        "SELECT profiles->'A'->>'description' FROM segmentation.model_versions WHERE status = 'champion'"
    )
    assert html.escape(description) in page


def test_static_chart_library_is_the_vendored_file(client) -> None:
    import hashlib

    body = client.get("/segmentation/static/chart.umd.min.js").content
    assert hashlib.sha256(body).hexdigest() == "48444a82d4edcb5bec0f1965faacdde18d9c17db3063d042abada2f705c9f54a"


# ---- models --------------------------------------------------------------------------------------------


def test_models_page_lists_every_version_with_the_champions_confusion_matrix(as_user) -> None:
    page = as_user("viewer").get("/segmentation/models").text
    for (version,) in query("SELECT version FROM segmentation.model_versions"):
        assert f"<td>v{version}</td>" in page
    assert 'class="confusion"' in page and 'data-chart="calibration"' in page
    assert "/dags/segmentation_retrain" in page
    # A viewer sees no promote form; an editor does, with the CSRF token.
    assert 'class="promote"' not in page
    editor = as_user("editor").get("/segmentation/models").text
    assert 'class="promote"' in editor and 'name="csrf_token"' in editor


def test_models_api_has_metrics_and_reliability_bins(as_user) -> None:
    data = as_user("viewer").get("/segmentation/api/models").json()
    assert len(data["versions"]) == scalar("SELECT count(*) FROM segmentation.model_versions")
    champ = data["champion"]
    assert champ["version"] == champion_version()
    matrix = champ["confusion_matrix"]
    assert len(matrix) == 4 and sum(map(sum, matrix)) > 0
    assert set(champ["reliability"]) == set(SEGMENTS)


# ---- quality -------------------------------------------------------------------------------------------


def test_quality_api_and_page_have_psi_missing_rates_and_reject_share(as_user) -> None:
    data = as_user("viewer").get("/segmentation/api/quality").json()
    metrics = {(f["metric"], f["subject"]) for f in data["figures"]}
    assert ("reject_share", "") in metrics
    assert {("missing_rate", c) for c in ATTRIBUTE_COLUMNS} <= metrics
    assert {("psi", c) for c in ATTRIBUTE_COLUMNS} <= metrics  # the second run checked drift
    page = as_user("viewer").get("/segmentation/quality").text
    for chart in ("psi", "missing", "rejects"):
        assert f'data-chart="{chart}"' in page
    assert f"retrain threshold ({data['drift_threshold']})" in page


# ---- customers -----------------------------------------------------------------------------------------


def test_customer_api_and_page(as_user) -> None:
    cid, segment, version = query(
        "SELECT customer_id, segment, model_version FROM segmentation.customer_segments ORDER BY customer_id LIMIT 1"
    )[0]
    data = as_user("viewer").get(f"/segmentation/api/customers/{cid}").json()
    assert data["segment"] == segment and data["model_version"] == version
    assert sum(data["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(data["attributes"]) == set(ATTRIBUTE_COLUMNS)
    assert data["history"] and data["history"][-1]["previous_segment"] is None
    assert data["description"].startswith(f"Segment {segment}")
    page = as_user("viewer").get(f"/segmentation/customers/{cid}").text
    assert f'id="customer-segment">{segment}<' in page and "Segment history" in page


def confident_customer() -> tuple[int, str]:
    """The scored customer whose segment the champion is surest of (its top reason must raise that segment)."""
    cid, segment = query(
        """SELECT customer_id, segment FROM segmentation.customer_segments WHERE model_version = %s
           ORDER BY greatest(p_a, p_b, p_c, p_d) DESC, customer_id LIMIT 1""",
        (champion_version(),),
    )[0]
    return int(cid), segment


def assert_reasons_shape(reasons: list[dict]) -> None:
    """Five reasons: distinct attributes among the nine, numeric effects, largest first, not all zero."""
    assert len(reasons) == 5
    attributes = [r["attribute"] for r in reasons]
    assert set(attributes) <= set(ATTRIBUTE_COLUMNS) and len(set(attributes)) == 5
    effects = [r["effect"] for r in reasons]
    assert all(isinstance(e, float) for e in effects)
    assert effects == sorted(effects, reverse=True)
    assert any(abs(e) > 1e-6 for e in effects)  # measured against background customers, not the row itself


def test_customer_api_and_page_give_the_reasons_of_explain_customer(as_user) -> None:
    from segmentation import explain
    from segmentation.config import get_settings
    from segmentation.db import connect

    cid, segment = confident_customer()
    data = as_user("viewer").get(f"/segmentation/api/customers/{cid}").json()
    assert data["segment"] == segment
    assert_reasons_shape(data["reasons"])
    # The probability is far above the background's mean, so the largest effect raises the assigned segment.
    assert data["reasons"][0]["effect"] > 0
    with connect(db_url()) as conn, conn.cursor() as cur:
        expected = explain.explain_customer(cur, cid, cache_dir=get_settings().model_cache_dir, key=model_key())
    assert expected["segment"] == segment
    assert [(r["attribute"], r["value"]) for r in data["reasons"]] == [
        (r["attribute"], r["value"]) for r in expected["reasons"]
    ]
    assert [r["effect"] for r in data["reasons"]] == pytest.approx([r["effect"] for r in expected["reasons"]])
    page = as_user("viewer").get(f"/segmentation/customers/{cid}").text
    shown = re.findall(r'<tr class="reason" data-attribute="([a-z_0-9]+)">', page)
    assert shown == [r["attribute"] for r in data["reasons"]]
    top = data["reasons"][0]
    assert f"{100 * top['effect']:+.1f} points" in page


def test_a_quarantined_customer_shows_its_reasons(as_user) -> None:
    data = as_user("viewer").get(f"/segmentation/api/customers/{BAD_IDS[0]}").json()
    assert data["segment"] is None and data["quarantine"]["reasons"] == ["age_not_a_number"]


def test_unknown_customer_is_404_and_a_malformed_id_is_422(as_user) -> None:
    viewer = as_user("viewer")
    assert viewer.get("/segmentation/api/customers/123456789").status_code == 404
    assert viewer.get("/segmentation/customers/123456789").status_code == 404
    for bad in ("abc", "0", "-3", "1.5", "99999999999999999999"):
        response = viewer.get(f"/segmentation/api/customers/{bad}")
        assert response.status_code == 422, bad
        assert "positive whole number" in response.json()["detail"]
        assert viewer.get(f"/segmentation/customers/{bad}").status_code == 422


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_id_is_refused_and_never_reflected(as_user, hostile: str) -> None:
    from urllib.parse import quote

    viewer = as_user("viewer")
    before = scalar("SELECT count(*) FROM segmentation.customers")
    for path in (f"/segmentation/customers/{quote(hostile, safe='')}",
                 f"/segmentation/api/customers/{quote(hostile, safe='')}",
                 f"/segmentation/customers?id={quote(hostile, safe='')}"):  # fmt: skip
        response = viewer.get(path)
        # 422 (not an id), or 404 when an encoded "/" makes it another path: never a page about that text.
        assert response.status_code in (404, 422), path
        assert "<script>alert" not in response.text and "<img src=x" not in response.text
        assert "onerror" not in response.text and "DROP TABLE" not in response.text and "1=1" not in response.text
    assert scalar("SELECT count(*) FROM segmentation.customers") == before


# ---- what-if -------------------------------------------------------------------------------------------


def test_predict_api_scores_with_the_champion_and_describes_the_segment(as_user) -> None:
    data = as_user("viewer").post("/segmentation/api/predict", json=VALID).json()
    assert data["segment"] in SEGMENTS and data["model_version"] == champion_version()
    assert max(data["probabilities"], key=data["probabilities"].get) == data["segment"]
    assert data["description"].startswith(f"Segment {data['segment']}")
    assert data["imputed"] == []


def test_predict_api_gives_reasons_with_the_customers_values(as_user) -> None:
    data = as_user("viewer").post("/segmentation/api/predict", json=VALID).json()
    assert_reasons_shape(data["reasons"])
    for reason in data["reasons"]:
        given = VALID[reason["attribute"]]
        assert reason["value"] == (float(given) if isinstance(given, int) else given), reason


def test_predict_api_reasons_for_a_scored_customer_support_its_segment(as_user) -> None:
    cid, segment = confident_customer()
    viewer = as_user("viewer")
    attributes = viewer.get(f"/segmentation/api/customers/{cid}").json()["attributes"]
    data = viewer.post("/segmentation/api/predict", json=attributes).json()
    assert data["segment"] == segment
    assert_reasons_shape(data["reasons"])
    assert data["reasons"][0]["effect"] > 0


def test_predict_api_imputes_empty_attributes_and_says_so(as_user) -> None:
    data = as_user("viewer").post("/segmentation/api/predict", json={"age": 40, "profession": ""}).json()
    assert data["segment"] in SEGMENTS
    assert data["imputed"] == [c for c in ATTRIBUTE_COLUMNS if c != "age"]


def test_predict_api_names_the_broken_rules_by_field(as_user) -> None:
    response = as_user("viewer").post(
        "/segmentation/api/predict", json={**VALID, "age": "abc", "profession": "<script>x</script>", "family_size": 0}
    )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [e["rule"] for e in errors["age"]] == ["age_not_a_number"]
    assert [e["rule"] for e in errors["profession"]] == ["profession_not_allowed"]
    assert [e["rule"] for e in errors["family_size"]] == ["family_size_out_of_range"]
    assert "<script>" not in response.text


def test_predict_api_refuses_unknown_fields_and_bad_json(as_user) -> None:
    viewer = as_user("viewer")
    response = viewer.post("/segmentation/api/predict", json={**VALID, "salary": "<b>1</b>"})
    assert response.status_code == 422 and "<b>" not in response.text
    response = viewer.post(
        "/segmentation/api/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "Traceback" not in response.text


def test_what_if_page_shows_segment_description_and_imputation(as_user) -> None:
    viewer = as_user("viewer")
    assert 'name="spending_score"' in viewer.get("/segmentation/what-if").text
    form = {k: str(v) for k, v in VALID.items()}
    form["work_experience"] = ""
    page = viewer.post("/segmentation/what-if", data=form).text
    segment = re.search(r'id="result-segment">([A-D])<', page).group(1)
    assert re.search(rf'id="result-description">Segment {segment} \(', page)
    assert "imputed by the model: work_experience" in page
    shown = re.findall(r'<tr class="reason" data-attribute="([a-z_0-9]+)">', page)
    assert len(shown) == 5 and set(shown) <= set(ATTRIBUTE_COLUMNS)
    assert "work_experience</th><td>(empty)</td>" in page or "work_experience" not in shown


def test_what_if_page_shows_rule_names_next_to_bad_fields(as_user) -> None:
    form = {k: str(v) for k, v in VALID.items()}
    form.update(age="17", var_1="<script>alert(1)</script>")
    response = as_user("viewer").post("/segmentation/what-if", data=form)
    assert response.status_code == 422
    page = response.text
    assert 'data-rule="age_out_of_range"' in page and 'data-rule="var_1_not_allowed"' in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


# ---- promotion -----------------------------------------------------------------------------------------


def test_promote_is_refused_to_a_viewer(as_user, client, tokens) -> None:
    target = int(scalar("SELECT max(version) FROM segmentation.model_versions WHERE status <> 'champion'"))
    refused = client.post(
        f"/segmentation/api/models/{target}/promote", headers={"Authorization": f"Bearer {tokens['viewer']}"}
    )
    assert refused.status_code == 403 and "segmentation_promote" in refused.json()["detail"]
    viewer = as_user("viewer")
    viewer.get("/segmentation/models")
    token = viewer.cookies.get("segmentation_csrf")
    form = viewer.post(f"/segmentation/models/{target}/promote", data={"csrf_token": token, "confirm": "yes"})
    assert form.status_code == 403
    assert scalar("SELECT status FROM segmentation.model_versions WHERE version = %s", (target,)) != "champion"


def test_promoting_an_unknown_version_is_404_and_the_champion_again_changes_nothing(client, tokens) -> None:
    editor = {"Authorization": f"Bearer {tokens['editor']}"}
    assert client.post("/segmentation/api/models/999/promote", headers=editor).status_code == 404
    assert client.post("/segmentation/api/models/abc/promote", headers=editor).status_code == 422
    again = client.post(f"/segmentation/api/models/{champion_version()}/promote", headers=editor)
    assert again.status_code == 200
    assert again.json()["action"].startswith("none") and again.json()["run_id"] is None


def test_promote_with_the_cookie_needs_the_csrf_token_and_same_origin(as_user) -> None:
    target = int(scalar("SELECT max(version) FROM segmentation.model_versions WHERE status <> 'champion'"))
    editor = as_user("editor")
    assert editor.post(f"/segmentation/api/models/{target}/promote").status_code == 403  # no token at all
    editor.get("/segmentation/models")
    token = editor.cookies.get("segmentation_csrf")
    assert token
    wrong = editor.post(f"/segmentation/api/models/{target}/promote", headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    cross = editor.post(
        f"/segmentation/api/models/{target}/promote",
        headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    unconfirmed = editor.post(f"/segmentation/models/{target}/promote", data={"csrf_token": token})
    assert unconfirmed.status_code == 422
    assert scalar("SELECT status FROM segmentation.model_versions WHERE version = %s", (target,)) != "champion"


def test_promotion_is_a_run_of_the_promotion_dag_triggered_as_the_user(as_user) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    old = champion_version()
    target = int(scalar("SELECT max(version) FROM segmentation.model_versions WHERE status <> 'champion'"))
    editor = as_user("editor")
    editor.get("/segmentation/models")
    token = editor.cookies.get("segmentation_csrf")

    # The form asks Airflow for the run and says so; the champion changes only when the run has promoted it.
    response = editor.post(f"/segmentation/models/{target}/promote", data={"csrf_token": token, "confirm": "yes"},
                           follow_redirects=False)  # fmt: skip
    assert response.status_code == 303 and "/segmentation/models?done=" in response.headers["location"]
    assert champion_version() == old

    # The API answers 202 with the run's id and its link in Airflow.
    answer = editor.post(f"/segmentation/api/models/{target}/promote", headers={"X-CSRF-Token": token})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["dag_id"] == "segmentation_promote" and body["version"] == target
    link = f"/dags/segmentation_promote/runs/{quote(body['run_id'], safe='')}"
    assert body["url"] == f"http://localhost:8080{link}"

    # Airflow holds both runs, with the version asked for and the user who asked.
    with create_session() as session:
        runs = session.scalars(select(DagRun).where(DagRun.dag_id == "segmentation_promote")).all()
        requested = {r.run_id: (r.conf, r.triggering_user_name, r.state) for r in runs}
    assert requested[body["run_id"]][:2] == ({"version": target}, "editor")
    assert sum(1 for conf, user, _ in requested.values() if conf == {"version": target} and user == "editor") == 2

    # The models page and its API list the pending promotion with its link.
    page = editor.get("/segmentation/models").text
    assert link in page and "pending (queued)" in page
    listed = editor.get("/segmentation/api/models").json()["promotions"]
    mine = next(p for p in listed if p["run_id"] == body["run_id"])
    assert (mine["version"], mine["triggered_by"], mine["state"]) == (target, "editor", "queued")


# ---- errors say what failed in words, never the login, host, port or driver text -----------------------

INTERNALS = ("127.0.0.1", "nobody", "secret-pw", "psycopg2", "OperationalError", "5999", "connection to server")


@pytest.mark.parametrize(("path", "json_answer"), [("/segmentation/", False), ("/segmentation/api/summary", True)])
def test_an_unreachable_database_is_a_503_in_words(as_user, monkeypatch, path: str, json_answer: bool) -> None:
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", "postgresql://nobody:secret-pw@127.0.0.1:5999/nowhere")
    response = as_user("admin").get(path)
    assert response.status_code == 503
    if json_answer:
        assert response.json() == {"detail": "the customer database is unavailable; the details are in the "
                                             "api-server's log"}  # fmt: skip
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert "the customer database is unavailable" in response.text
    assert not [word for word in INTERNALS if word in response.text], response.text


def test_a_login_without_the_privilege_is_a_403_in_words(as_user, scored_db: str, monkeypatch) -> None:
    """The pages on a login that may read only the analyst views: every page refuses in words, never 500."""
    import uuid

    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    from segmentation.migrations import apply_roles
    from tests.conftest import admin_url

    apply_roles(scored_db)
    user = f"seg_analyst_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(admin_url())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE segmentation_analyst").format(sql.Identifier(user)))
    try:
        monkeypatch.setenv("SEGMENTATION_DATABASE_URL", make_url(scored_db).set(username=user).render_as_string())
        client = as_user("admin")
        for path in ("/segmentation/models", "/segmentation/api/models", "/segmentation/customers/1"):
            response = client.get(path)
            assert response.status_code == 403, (path, response.status_code)
            assert "this login may not do that in the customer database" in response.text
            assert user not in response.text and "permission denied" not in response.text
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
        admin.close()
