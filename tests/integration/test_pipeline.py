"""The pipeline's steps against a real PostgreSQL database (embedded, or the server named for tests)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from segmentation import planning, registry, tasks
from segmentation.config import get_settings
from segmentation.data import read_kaggle_csv
from segmentation.db import connect
from segmentation.errors import ModelError, RejectThresholdExceeded
from segmentation.loading import load_customers, to_raw_text
from segmentation.migrations import migrate, migration_files
from segmentation.synthetic import generate_customers
from tests.conftest import NEW_CSV, TRAIN_CSV
from tests.helpers import db_url, load_generated, model_key, query, scalar

pytestmark = pytest.mark.db


@pytest.fixture
def fast_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "hist_gradient_boosting,logistic_regression")
    monkeypatch.setenv("SEGMENTATION_CV_FOLDS", "2")
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "700")
    monkeypatch.setenv("SEGMENTATION_CHUNK_SIZE", "300")


def test_migrations_are_recorded_and_idempotent(fresh_db: str) -> None:
    assert migrate(fresh_db) == []
    from segmentation.config import DEFAULT_SQL_DIR

    names = [r[0] for r in query("SELECT name FROM segmentation.schema_migrations ORDER BY version")]
    assert names[:7] == [
        "001_core_tables.sql",
        "002_analyst_views.sql",
        "003_lean_segment_writes.sql",
        "004_segment_writes_without_fk_check.sql",
        "005_evaluation_model.sql",
        "006_ui_figures.sql",
        "007_change_capture_and_segment_swap.sql",
    ]
    assert names == [p.name for p in migration_files(DEFAULT_SQL_DIR)]
    assert "008_signed_artifacts_failures_alerts.sql" in names


def test_a_changed_applied_migration_fails_init_db_and_names_the_file(fresh_db: str, tmp_path) -> None:
    from segmentation.config import DEFAULT_SQL_DIR
    from segmentation.errors import DatabaseError

    sql_dir = tmp_path / "sql"
    shutil.copytree(DEFAULT_SQL_DIR, sql_dir)
    edited = sql_dir / "002_analyst_views.sql"
    edited.write_text(edited.read_text() + "\n-- an edit after it was applied\n")
    (sql_dir / "099_later.sql").write_text("CREATE TABLE segmentation.later (id int);")
    with pytest.raises(DatabaseError, match=r"migration 002_analyst_views\.sql was applied .* must not change"):
        migrate(fresh_db, sql_dir)
    # Nothing was applied: the check runs before any new migration.
    assert scalar("SELECT count(*) FROM segmentation.schema_migrations") == len(migration_files(DEFAULT_SQL_DIR))
    assert scalar("SELECT to_regclass('segmentation.later')") is None


def test_loading_upserts_by_id_and_bumps_updated_at_only_on_change(fresh_db: str) -> None:
    frame = to_raw_text(generate_customers(200, seed=3))
    first = load_customers(frame, run_id="l1", url=db_url())
    assert (first.inserted, first.updated, first.unchanged) == (200, 0, 0)
    before = dict(query("SELECT customer_id, updated_at FROM segmentation.customers"))

    again = load_customers(frame, run_id="l2", url=db_url())
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 200)

    changed = frame.copy()
    changed.loc[changed["customer_id"] == "5", "age"] = "77"
    third = load_customers(changed, run_id="l3", url=db_url())
    assert (third.inserted, third.updated) == (0, 1)
    after = dict(query("SELECT customer_id, updated_at FROM segmentation.customers"))
    assert [cid for cid in after if after[cid] != before[cid]] == [5]
    assert scalar("SELECT age FROM segmentation.customers WHERE customer_id = 5") == "77"


def test_cleaning_quarantines_with_reasons_and_is_incremental(fresh_db: str) -> None:
    load_generated(100)
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("UPDATE segmentation.customers SET age = 'old' WHERE customer_id = 7")
        cur.execute("UPDATE segmentation.customers SET gender = '  FEMALE ' WHERE customer_id = 8")
    figures = tasks.clean("run-1")
    assert (figures["rows"], figures["clean"], figures["rejected"]) == (100, 99, 1)
    assert query("SELECT customer_id, reasons FROM segmentation.customer_rejects") == [(7, ["age_not_a_number"])]
    assert scalar("SELECT gender FROM segmentation.clean_customers WHERE customer_id = 8") == "Female"
    assert tasks.clean("run-2")["rows"] == 0  # nothing new: quarantined rows are not re-checked


def test_too_many_bad_rows_fail_the_batch_and_write_nothing(fresh_db: str) -> None:
    load_generated(50)
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("UPDATE segmentation.customers SET family_size = '0' WHERE customer_id <= 20")
    with pytest.raises(RejectThresholdExceeded, match=r"20 of 50 rows \(40.0%\)"):
        tasks.clean("run-bad")
    assert scalar("SELECT count(*) FROM segmentation.clean_customers") == 0
    assert scalar("SELECT count(*) FROM segmentation.customer_rejects") == 0


def test_scoring_without_a_champion_is_a_clear_error(fresh_db: str) -> None:
    load_generated(50)
    tasks.clean("r")
    tasks.build_features("r")
    with pytest.raises(ModelError, match="no champion"):
        tasks.plan_scoring("r")


def test_nightly_run_scores_everyone_once_and_a_rerun_changes_nothing(fresh_db: str, fast_training: None) -> None:
    load_generated(3000)
    first = tasks.run_nightly("night-1")
    assert first["retrain"]["promoted"] is True
    assert first["score"] == {"shards": 5, "rows": 3000}
    assert scalar("SELECT count(DISTINCT customer_id) FROM segmentation.customer_segments") == 3000
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == 3000
    sums = query("SELECT min(p_a + p_b + p_c + p_d), max(p_a + p_b + p_c + p_d) FROM segmentation.customer_segments")
    assert sums[0][0] == pytest.approx(1.0) and sums[0][1] == pytest.approx(1.0)
    snapshot = query("SELECT * FROM segmentation.customer_segments ORDER BY customer_id")
    shard_steps = query(
        """SELECT key, value FROM segmentation.pipeline_runs, jsonb_each(steps)
           WHERE run_id = 'night-1' AND starts_with(key, 'score_shard_') ORDER BY key"""
    )
    assert [key for key, _ in shard_steps] == [f"score_shard_{i}" for i in range(5)]
    assert sum(step["rows"] for _, step in shard_steps) == 3000
    for _, step in shard_steps:
        assert set(step["phases"]) == {"load", "read", "predict", "distributions", "stage", "wait", "write"}
        assert step["phases"]["load"] > 0 and step["phases"]["predict"] > 0 and step["phases"]["write"] > 0

    second = tasks.run_nightly("night-2")
    assert second["retrain"] == {"trained": False}
    assert second["score"] == {"shards": 0, "rows": 0}
    assert query("SELECT * FROM segmentation.customer_segments ORDER BY customer_id") == snapshot
    assert scalar("SELECT count(*) FROM segmentation.segment_history") == 3000
    assert scalar("SELECT status FROM segmentation.pipeline_runs WHERE run_id = 'night-2'") == "success"

    changed = to_raw_text(generate_customers(3000, seed=1, labelled_share=0.5))
    changed = changed[changed["customer_id"].isin(["10", "20", "30"])].assign(age="66")
    new = to_raw_text(generate_customers(5, seed=9, start_id=10_001))
    load_customers(pd.concat([changed, new]), run_id="load-2", url=db_url())
    third = tasks.run_nightly("night-3")
    assert third["score"]["rows"] == 8
    rescored = {r[0] for r in query("SELECT customer_id FROM segmentation.customer_segments WHERE run_id = 'night-3'")}
    assert rescored == {10, 20, 30, *range(10_001, 10_006)}


def test_a_tampered_artifact_is_never_loaded(fresh_db: str, fast_training: None) -> None:
    load_generated(1500)
    tasks.run_nightly("n1")
    version = scalar("SELECT version FROM segmentation.model_versions WHERE status = 'champion'")
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE segmentation.model_versions SET artifact = artifact || '\\x00'::bytea WHERE version = %s",
            (version,),
        )
    cache = get_settings().model_cache_dir
    # This worker has a verified copy keyed by the registered sha256, so it keeps using the genuine model.
    with connect(db_url()) as conn, conn.cursor() as cur:
        assert registry.load_model(cur, version, cache, key=model_key()) is not None
    # A worker without that copy must refuse the tampered bytes.
    shutil.rmtree(cache)
    with connect(db_url()) as conn, conn.cursor() as cur, pytest.raises(ModelError, match="fails its signature check"):
        registry.load_model(cur, version, cache, key=model_key())
    # A corrupt local copy is never used either: it is discarded and the database copy is checked.
    cache.mkdir(parents=True)
    sha = scalar("SELECT sha256 FROM segmentation.model_versions WHERE version = %s", (version,))
    (cache / f"{sha}.joblib").write_bytes(b"garbage")
    with connect(db_url()) as conn, conn.cursor() as cur, pytest.raises(ModelError, match="fails its signature check"):
        registry.load_model(cur, version, cache, key=model_key())
    assert not (cache / f"{sha}.joblib").exists()


@pytest.mark.realdata
def test_real_data_loads_without_quarantine_and_new_batch_rescores_exactly_the_changes(
    fresh_db: str, fast_training: None
) -> None:
    if not (TRAIN_CSV.exists() and NEW_CSV.exists()):
        pytest.skip("../shared/data is not present on this machine")
    load_customers(read_kaggle_csv(TRAIN_CSV), run_id="load-train", url=db_url())
    first = tasks.run_nightly("real-1")
    assert first["clean"]["rejected"] == 0
    n_train = scalar("SELECT count(*) FROM segmentation.customers")
    assert first["score"]["rows"] == n_train

    before = dict(query("SELECT customer_id, updated_at FROM segmentation.customers"))
    load_customers(read_kaggle_csv(NEW_CSV), run_id="load-new", url=db_url())
    after = dict(query("SELECT customer_id, updated_at FROM segmentation.customers"))
    touched = {cid for cid, ts in after.items() if before.get(cid) != ts}
    second = tasks.run_nightly("real-2")
    assert second["clean"]["rejected"] == 0
    assert second["score"]["rows"] == len(touched)
    rescored = {r[0] for r in query("SELECT customer_id FROM segmentation.customer_segments WHERE run_id = 'real-2'")}
    assert rescored == touched
    assert scalar("SELECT count(*) FROM segmentation.customer_segments") == len(after)


def test_chunked_sharded_scoring_equals_scoring_in_one_piece(
    fresh_db: str, fast_training: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segmentation import scoring

    # Tree models predict each row on its own, so any chunking gives the same bits. A linear model's
    # predict_proba is a BLAS matrix product whose blocking depends on the batch's row count, so its
    # probabilities may differ in the last bit between chunk sizes; this test pins the tree family.
    monkeypatch.setenv("SEGMENTATION_CANDIDATES", "hist_gradient_boosting")
    load_generated(2000)
    tasks.run_nightly("chunked")  # 3 shards of up to 700 rows, chunks of 300
    columns = "customer_id, segment, p_a, p_b, p_c, p_d"
    chunked = query(f"SELECT {columns} FROM segmentation.customer_segments ORDER BY customer_id")
    assert len(chunked) == 2000

    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE segmentation.customer_segments, segmentation.segment_history")
    monkeypatch.setenv("SEGMENTATION_SHARD_SIZE", "1000000")
    monkeypatch.setenv("SEGMENTATION_CHUNK_SIZE", "1000000")
    assert tasks.score_all("whole") == {"shards": 1, "rows": 2000}
    assert query(f"SELECT {columns} FROM segmentation.customer_segments ORDER BY customer_id") == chunked

    # And both equal predicting every row in memory: the binary COPY write path loses no bit.
    with connect(db_url()) as conn, conn.cursor() as cur:
        model = registry.load_model(cur, registry.champion(cur).version, key=model_key())
        frame = scoring.read_features(
            cur, f"SELECT {scoring.FEATURE_COLUMNS_SQL} FROM segmentation.customer_features AS f", {}
        )
    direct = scoring.predict_frame(model, frame).sort_values("customer_id")
    assert [tuple(r) for r in direct.itertuples(index=False)] == chunked


@pytest.mark.parametrize(
    ("rows", "shard_size", "max_shards", "expected_sizes"),
    [
        (0, 10, 1024, []),
        (1, 10, 1024, [1]),
        (25, 10, 1024, [9, 8, 8]),
        (25, 1, 4, [7, 6, 6, 6]),  # the map limit: 25 shards wanted, 4 allowed, sizes stay balanced
    ],
)
def test_an_increment_plan_queues_each_changed_customer_once_in_balanced_id_ranges(
    fresh_db: str, rows: int, shard_size: int, max_shards: int, expected_sizes: list[int]
) -> None:

    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO segmentation.customer_features (customer_id, source_updated_at)
               SELECT i * 7, now() FROM generate_series(1, %s) AS i""",
            (rows,),
        )
        shards, queued_rows = planning.plan_increment(cur, run_id="plan", shard_size=shard_size, max_shards=max_shards)
        replanned, _ = planning.plan_increment(cur, run_id="plan", shard_size=shard_size, max_shards=max_shards)
        cur.execute(
            """SELECT shard, count(*), min(customer_id), max(customer_id) FROM segmentation.score_queue
               WHERE run_id = 'plan' GROUP BY shard ORDER BY shard"""
        )
        queued = cur.fetchall()
    assert shards == replanned == list(range(len(expected_sizes)))
    assert queued_rows == rows
    assert [q[1] for q in queued] == expected_sizes
    assert [q[0] for q in queued] == shards
    # Contiguous id ranges: each shard starts after the previous one ends.
    assert all(queued[i][3] < queued[i + 1][2] for i in range(len(queued) - 1))


def test_features_built_in_sql_equal_derive_features(fresh_db: str) -> None:
    import numpy as np

    from segmentation.features import derive_features
    from segmentation.pgcopy import copy_frame_out

    load_generated(3000, labelled_share=0.0)
    tasks.clean("sql-features")
    with connect(db_url()) as conn, conn.cursor() as cur:
        # Fractional experience, ages at and below the working-age start, and gaps in either input.
        cur.execute(
            """UPDATE segmentation.clean_customers SET
                   work_experience = CASE WHEN customer_id % 5 = 0 THEN (customer_id % 97) / 7.0
                                          WHEN customer_id % 11 = 0 THEN NULL ELSE work_experience END,
                   age = CASE WHEN customer_id % 13 = 0 THEN NULL WHEN customer_id % 17 = 0 THEN 14
                              WHEN customer_id % 19 = 0 THEN 15 ELSE age END,
                   spending_score = CASE WHEN customer_id % 23 = 0 THEN NULL ELSE spending_score END"""
        )
    assert tasks.build_features("sql-features")["rows"] == 3000
    assert tasks.build_features("sql-features-again")["rows"] == 0

    with connect(db_url()) as conn, conn.cursor() as cur:
        clean = copy_frame_out(cur, "SELECT * FROM segmentation.clean_customers ORDER BY customer_id")
        built = copy_frame_out(
            cur,
            "SELECT customer_id, spending_rank, working_years_share FROM segmentation.customer_features "
            "ORDER BY customer_id",
        )
    expected = derive_features(tasks.typed_clean_frame(clean))
    assert built["customer_id"].astype("int64").tolist() == expected["customer_id"].tolist()
    assert expected["working_years_share"].isna().sum() > 300 and expected["spending_rank"].isna().sum() > 100
    for column in ("spending_rank", "working_years_share"):
        # The table stores real (float4): compare at that precision, NaN with NaN.
        got = pd.to_numeric(built[column]).to_numpy(dtype="float32")
        want = expected[column].to_numpy(dtype="float32")
        np.testing.assert_array_equal(got, want)


def test_bulk_writes_refresh_statistics_and_small_increments_do_not(fresh_db: str) -> None:
    import psycopg2.errors

    features_estimate = "SELECT reltuples FROM pg_class WHERE oid = 'segmentation.customer_features'::regclass"
    load_generated(2000, labelled_share=0.0)
    assert tasks.clean("bulk")["analyzed"] is True
    assert tasks.build_features("bulk")["analyzed"] is True
    assert scalar(features_estimate) == 2000
    assert scalar("SELECT reltuples FROM pg_class WHERE oid = 'segmentation.clean_customers'::regclass") == 2000

    load_generated(50, seed=5, start_id=100, labelled_share=0.0)  # 50 changed customers: 2.5 % of the table
    cleaned = tasks.clean("small")
    assert cleaned["rows"] == 50 and cleaned["analyzed"] is False
    built = tasks.build_features("small")
    assert built["rows"] == 50 and built["analyzed"] is False

    with pytest.raises(psycopg2.errors.InvalidParameterValue, match="customers is not one of"):
        with connect(db_url()) as conn, conn.cursor() as cur:
            cur.execute("SELECT segmentation.analyze_after_bulk_write('customers')")


@pytest.mark.parametrize(("rows", "shard_size"), [(0, 10), (1, 10), (25, 10), (3000, 500), (250_000, 60_000)])
def test_a_rebuild_plan_splits_every_customer_into_one_id_range(fresh_db: str, rows: int, shard_size: int) -> None:
    """Shard ranges of a full rescore cover each feature row exactly once, at about the planned size (the
    250,000-row case draws its bounds from a block sample)."""
    from segmentation import rebuild, scoring

    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO segmentation.customer_features (customer_id, source_updated_at)
               SELECT i * 7, now() FROM generate_series(1, %s) AS i""",
            (rows,),
        )
        cur.execute("SELECT 1 FROM segmentation.scoring_state FOR UPDATE")
        planned = rebuild.plan(
            cur, run_id="p", model_version=1, shard_size=shard_size, max_shards=1024, state_locked=True
        )
        sizes = []
        for shard in range(planned.shards):
            after, upto = rebuild._shard_range(planned.bounds, shard)
            cur.execute(
                "SELECT count(*) FROM segmentation.customer_features WHERE customer_id > %s AND customer_id <= %s",
                (after, upto),
            )
            sizes.append(cur.fetchone()[0])
        cur.execute("SELECT count(*) FROM segmentation.score_pending")
        left_queued = cur.fetchone()[0]
    assert planned.rows == rows and sum(sizes) == rows
    assert planned.shards == max(1, scoring.shard_count(rows, shard_size, 1024))
    if rows >= 25:
        assert max(sizes) <= 1.25 * rows / planned.shards and min(sizes) >= 0.75 * rows / planned.shards
    assert left_queued == 0  # a full rescore takes the whole queue
