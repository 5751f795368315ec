"""The analyst login reads exactly the analyst views (segmentation.dictionary.ANALYST_VIEWS), nothing raw."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from psycopg2 import sql
from sqlalchemy.engine import make_url

from segmentation import tasks
from segmentation.dictionary import ANALYST_VIEWS
from segmentation.loading import load_customers, to_raw_text
from segmentation.migrations import apply_roles
from segmentation.synthetic import generate_customers
from tests.conftest import admin_url
from tests.helpers import run_as, scalar

pytestmark = pytest.mark.db


@pytest.fixture
def analyst(fresh_db: str) -> Iterator[str]:
    """The URL of a throw-away login in ``segmentation_analyst``, once every analyst view exists."""
    apply_roles(fresh_db)
    user = f"seg_analyst_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_url())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE segmentation_analyst").format(sql.Identifier(user)))
    try:
        yield make_url(fresh_db).set(username=user).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
        admin.close()


def test_the_analyst_reads_the_analyst_views_and_realised_quality_but_nothing_raw(
    analyst: str, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    raw = to_raw_text(generate_customers(900, labelled_share=1.0, seed=5))
    unlabelled = raw.iloc[600:].assign(segment=None)
    load_customers(raw.iloc[:600], run_id="load", url=fresh_db)
    load_customers(unlabelled, run_id="load", url=fresh_db)
    tasks.run_nightly("for-analysts")
    load_customers(raw.iloc[600:], run_id="late-labels", url=fresh_db)

    readable = run_as(
        analyst,
        """SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
           WHERE n.nspname LIKE 'segmentation%' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
             AND has_table_privilege(c.oid, 'SELECT')""",
    )
    assert sorted(r[0] for r in readable) == sorted(ANALYST_VIEWS)
    assert run_as(analyst, "SELECT labelled FROM segmentation.realised_quality") == [(300,)]
    assert run_as(analyst, "SELECT sum(labelled) FROM segmentation.realised_quality_daily") == [(300,)]
    assert scalar("SELECT count(*) FROM segmentation.label_outcomes") == 300
    for view in ANALYST_VIEWS:
        run_as(analyst, f"SELECT * FROM segmentation.{view} LIMIT 1")
    for statement in (
        "SELECT * FROM segmentation.label_outcomes",
        "SELECT * FROM segmentation.label_outcome_classes",
        "SELECT * FROM segmentation.customer_labels",
        "SELECT * FROM segmentation.customers",
        "SELECT raw FROM segmentation.customer_rejects",
        "SELECT artifact FROM segmentation.model_versions",
        "SELECT * FROM segmentation.alerts",
        "INSERT INTO segmentation.customer_labels VALUES (1, 'A')",
        "DELETE FROM segmentation.label_outcomes",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            run_as(analyst, statement)
