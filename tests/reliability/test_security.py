"""Roles and secrets: each role can do exactly what it needs, and passwords never reach the logs."""

from __future__ import annotations

import logging
import uuid

import psycopg2
import pytest
from psycopg2 import sql
from sqlalchemy.engine import make_url

from segmentation import tasks
from segmentation.db import reset_url_cache
from segmentation.migrations import apply_roles
from tests.conftest import admin_url
from tests.helpers import load_generated, run_as, scalar

pytestmark = pytest.mark.db


@pytest.fixture
def login_users(fresh_db: str):
    """Throw-away login users, one in each group role; dropped afterwards."""
    apply_roles(fresh_db)
    apply_roles(fresh_db)  # idempotent
    suffix = uuid.uuid4().hex[:8]
    users = {"pipeline": f"seg_pipe_{suffix}", "training": f"seg_train_{suffix}", "analyst": f"seg_analyst_{suffix}"}
    admin = psycopg2.connect(admin_url())
    admin.autocommit = True
    with admin.cursor() as cur:
        for group, user in users.items():
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                    sql.Identifier(user), sql.Identifier(f"segmentation_{group}")
                )
            )
    yield {
        group: make_url(fresh_db).set(username=user).render_as_string(hide_password=False)
        for group, user in users.items()
    }
    with admin.cursor() as cur:
        for user in users.values():
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
    admin.close()


def test_the_pipeline_and_training_roles_run_the_pipeline_but_cannot_change_the_schema(
    login_users: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_generated(800, labelled_share=0.6)
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", login_users["pipeline"])
    monkeypatch.setenv("SEGMENTATION_TRAINING_DATABASE_URL", login_users["training"])
    reset_url_cache()
    summary = tasks.run_nightly("as-pipeline-role")
    assert summary["retrain"]["promoted"] and summary["score"]["rows"] == 800
    assert scalar("SELECT count(*) FROM segmentation.model_versions WHERE artifact_hmac IS NOT NULL") == 1
    for user in ("pipeline", "training"):
        for statement in ("DROP TABLE segmentation.customers", "CREATE TABLE segmentation.x (a int)"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                run_as(login_users[user], statement)


def test_the_scoring_role_reads_model_versions_but_can_never_change_them(
    login_users: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_generated(600, labelled_share=0.6)
    tasks.run_nightly("owner-run")
    scoring = login_users["pipeline"]
    assert run_as(scoring, "SELECT version, length(artifact) > 0 FROM segmentation.model_versions") == [(1, True)]
    for statement in (
        "UPDATE segmentation.model_versions SET artifact = '\\x00', sha256 = repeat('0', 64)",
        "UPDATE segmentation.model_versions SET status = 'retired'",
        "INSERT INTO segmentation.model_versions (model_name, sha256, artifact) VALUES ('x', repeat('0', 64), '')",
        "DELETE FROM segmentation.model_versions",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            run_as(scoring, statement)
    # Without a training login the scoring login cannot register a model: training fails, nothing is added.
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", scoring)
    monkeypatch.delenv("SEGMENTATION_TRAINING_DATABASE_URL", raising=False)
    reset_url_cache()
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        tasks.train("as-scoring-role", trigger="manual")
    assert run_as(scoring, "SELECT count(*) FROM segmentation.model_versions") == [(1,)]
    # The training login registers versions but cannot touch customers, segments or the queue.
    for statement in (
        "DELETE FROM segmentation.customer_segments",
        "UPDATE segmentation.customers SET age = '1'",
        "INSERT INTO segmentation.score_queue VALUES ('x', 0, 1)",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            run_as(login_users["training"], statement)


def test_the_analyst_role_reads_the_views_only(login_users: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    load_generated(800, labelled_share=0.6)
    tasks.run_nightly("for-analysts")
    analyst = login_users["analyst"]
    assert len(run_as(analyst, "SELECT * FROM segmentation.current_segments")) == 800
    assert {r[0] for r in run_as(analyst, "SELECT segment FROM segmentation.segment_summary")} == set("ABCD")
    run_as(analyst, "SELECT * FROM segmentation.segment_changes")
    for statement in (
        "SELECT raw FROM segmentation.customer_rejects",
        "SELECT artifact FROM segmentation.model_versions",
        "SELECT * FROM segmentation.customers",
        "DELETE FROM segmentation.customer_segments",
        "INSERT INTO segmentation.customer_labels VALUES (1, 'A')",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            run_as(analyst, statement)


def test_passwords_never_reach_the_logs(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd
) -> None:
    secret = "Pa55-" + uuid.uuid4().hex  # trust authentication ignores it, but it travels in the URL
    url = make_url(fresh_db).set(password=secret).render_as_string(hide_password=False)
    monkeypatch.setenv("SEGMENTATION_DATABASE_URL", url)
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    reset_url_cache()
    caplog.set_level(logging.DEBUG)
    load_generated(600, labelled_share=0.6)
    tasks.run_nightly("with-secret")
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == 600
    out, err = capfd.readouterr()
    assert caplog.records, "the run logged nothing, so the check would prove nothing"
    assert secret not in caplog.text and secret not in out and secret not in err


# Everything the Segmentation pages in the api-server read.
UI_READS = (
    "customer_segments",
    "model_versions",
    "pipeline_runs",
    "segment_distributions",
    "customers",
    "clean_customers",
    "customer_features",
    "customer_rejects",
    "alerts",
    "drift_metrics",
    "segment_history",
    "current_segments",
)


@pytest.fixture
def ui_login(fresh_db: str):
    """A throw-away login in the UI's group (the api-server's segmentation_web); dropped afterwards."""
    apply_roles(fresh_db)
    user = f"seg_ui_{uuid.uuid4().hex}"
    admin = psycopg2.connect(admin_url())
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE segmentation_ui").format(sql.Identifier(user)))
        yield make_url(fresh_db).set(username=user).render_as_string(hide_password=False)
    finally:
        # Whatever it came to own or was granted in the test database goes first, then the role itself.
        owner = psycopg2.connect(fresh_db)
        owner.autocommit = True
        try:
            with owner.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
                if cur.fetchone():
                    cur.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(user)))
                    cur.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))
        finally:
            owner.close()
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
        admin.close()


def test_the_ui_role_reads_every_table_the_pages_show_but_changes_no_model_or_segment(ui_login: str) -> None:
    for relation in UI_READS:
        run_as(ui_login, f"SELECT * FROM segmentation.{relation} LIMIT 1")
    for statement in (
        "INSERT INTO segmentation.model_versions (model_name, sha256, artifact) VALUES ('x', repeat('0', 64), '')",
        "UPDATE segmentation.model_versions SET status = 'champion'",
        "DELETE FROM segmentation.model_versions",
        "INSERT INTO segmentation.customer_segments (customer_id, segment, p_a, p_b, p_c, p_d, model_version,"
        " source_updated_at, run_id) VALUES (1, 'A', 1, 0, 0, 0, 1, now(), 'x')",
        "UPDATE segmentation.customer_segments SET segment = 'A'",
        "DELETE FROM segmentation.customer_segments",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            run_as(ui_login, statement)
