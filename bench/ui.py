"""Speed of the Segmentation pages and API at 5,000,000 customers.

Usage:

    flock /work/bench.lock .venv/bin/python bench/ui.py [--rows 5000000] [--repeat 30] [--write]

One run:

1. a throw-away database (next to SEGMENTATION_DATABASE_URL when set, else an embedded server); 5,000 generated
   customers go through the real pipeline (``tasks.run_nightly``: clean, features, training of a
   hist_gradient_boosting champion, scoring, finalise);
2. the remaining customers up to ``--rows`` are made in SQL (``INSERT ... SELECT`` from ``generate_series``,
   set-based like COPY; the pipeline's own speed is measured by bench/scoring.py): source rows, typed feature
   rows, a segment with four probabilities and a first history row each;
3. a finalise over all of them (``tasks.finalise``: the per-run shares, quality figures and per-segment
   attribute distributions that the pages read) is timed, and 29 earlier runs' figures are added so the charts
   show 30 runs;
4. each page and API endpoint is requested ``--repeat`` times in process through FastAPI's TestClient with a
   real Airflow token (the app as Airflow mounts it, without the network), and the median and 95th percentile
   are printed. The customer page/API and the what-if include their reasons (checked). The what-if's first call
   (which loads and verifies the champion) is shown apart from the later ones, which use the per-process cache.

``--write`` replaces the "## Segmentation UI" section of BENCHMARKS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: tests.scratch

import argparse
import os
import platform
import random
import shlex
import statistics
import tempfile
import time

from benchmarks_md import publish

SECTION = "## Segmentation UI"
TRAINED = 5_000
PAYLOAD = {"gender": "Female", "ever_married": "Yes", "age": 38, "graduated": "Yes", "profession": "Artist",
           "work_experience": 1, "spending_score": "Average", "family_size": 3, "var_1": "Cat_6"}  # fmt: skip

BULK_SQL = """
SELECT setseed(0.42);
CREATE TEMP TABLE gen AS
SELECT g AS customer_id,
       (ARRAY['Female','Male'])[1 + floor(random() * 2)::int] AS gender,
       CASE WHEN random() < 0.02 THEN NULL ELSE (ARRAY['No','Yes'])[1 + floor(random() * 2)::int] END AS ever_married,
       (18 + floor(random() * 72))::smallint AS age,
       CASE WHEN random() < 0.01 THEN NULL ELSE (ARRAY['No','Yes'])[1 + floor(random() * 2)::int] END AS graduated,
       CASE WHEN random() < 0.015 THEN NULL ELSE (ARRAY['Artist','Doctor','Engineer','Entertainment','Executive',
            'Healthcare','Homemaker','Lawyer','Marketing'])[1 + floor(random() * 9)::int] END AS profession,
       CASE WHEN random() < 0.1 THEN NULL ELSE floor(random() * 15)::real END AS work_experience,
       (ARRAY['Low','Average','High'])[1 + floor(random() * 3)::int] AS spending_score,
       CASE WHEN random() < 0.04 THEN NULL ELSE (1 + floor(random() * 9))::real END AS family_size,
       (ARRAY['Cat_1','Cat_2','Cat_3','Cat_4','Cat_5','Cat_6','Cat_7'])[1 + floor(random() * 7)::int] AS var_1,
       random() AS ra, random() AS rb, random() AS rc, random() AS rd
FROM generate_series(%(first)s, %(last)s) AS g;
INSERT INTO segmentation.customers
SELECT customer_id, gender, ever_married, age::text, graduated, profession, work_experience::text, spending_score,
       family_size::text, var_1, now() FROM gen;
INSERT INTO segmentation.customer_features
SELECT customer_id, gender, ever_married, age, graduated, profession, work_experience, spending_score, family_size,
       var_1, CASE spending_score WHEN 'Low' THEN 0 WHEN 'Average' THEN 1 ELSE 2 END,
       work_experience / nullif(age - 17, 0), now(), now(), 'bench-load' FROM gen;
INSERT INTO segmentation.customer_segments
SELECT customer_id,
       CASE greatest(ra, rb, rc, rd) WHEN ra THEN 'A' WHEN rb THEN 'B' WHEN rc THEN 'C' ELSE 'D' END,
       ra / (ra + rb + rc + rd), rb / (ra + rb + rc + rd), rc / (ra + rb + rc + rd), rd / (ra + rb + rc + rd),
       %(version)s, now(), now(), 'bench-load' FROM gen;
INSERT INTO segmentation.segment_history (customer_id, previous_segment, segment, model_version, run_id)
SELECT customer_id, NULL, segment, model_version, run_id FROM segmentation.customer_segments
WHERE customer_id >= %(first)s;
-- Made behind the pipeline's back, so the exact per-segment counts that scoring keeps are rebuilt here.
DELETE FROM segmentation.segment_counts;
INSERT INTO segmentation.segment_counts (segment, customers)
SELECT segment, count(*) FROM segmentation.customer_segments GROUP BY segment;
DROP TABLE gen;
"""

# 29 earlier runs: the last run's figures, slightly varied, at daily intervals.
HISTORY_SQL = """
INSERT INTO segmentation.pipeline_runs (run_id, dag_id, started_at, finished_at, status, model_version, steps)
SELECT 'bench-past-' || i, 'segmentation_nightly', now() - make_interval(days => i),
       now() - make_interval(days => i) + interval '20 minutes', 'success', model_version, steps
FROM segmentation.pipeline_runs, generate_series(1, 29) AS i WHERE run_id = %(run)s;
INSERT INTO segmentation.drift_metrics (run_id, metric, subject, value)
SELECT 'bench-past-' || i, metric, subject, value * (0.9 + 0.2 * random())
FROM segmentation.drift_metrics, generate_series(1, 29) AS i WHERE run_id = %(run)s;
INSERT INTO segmentation.drift_metrics (run_id, metric, subject, value)
SELECT 'bench-past-' || i, 'psi', c, 0.02 + 0.1 * random()
FROM unnest(%(columns)s::text[]) AS c, generate_series(1, 29) AS i
ON CONFLICT DO NOTHING;
"""


def _timed(call, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 303), (response.status_code, response.text[:500])
    return out


def _row(name: str, ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"| {name} | {statistics.median(ms):.1f} | {p95:.1f} | {len(ms)} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--candidates", default="hist_gradient_boosting", help="SEGMENTATION_CANDIDATES of the champion's training"
    )
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="segmentation-bench-ui-"))
    os.environ.update(
        {
            "SEGMENTATION_DATA_DIR": str(tmp / "data"),
            "SEGMENTATION_MODELS_DIR": str(tmp / "models"),
            "SEGMENTATION_CANDIDATES": args.candidates,
            "SEGMENTATION_CV_FOLDS": "2",
            "AIRFLOW_HOME": str(tmp / "airflow"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API_AUTH__JWT_SECRET": "bench-only-" + "0123456789abcdef" * 4,
        }
    )
    admin_env = "SEGMENTATION_DATABASE_URL"
    from tests import scratch

    with scratch.scratch_server(tmp / "pg", admin_env) as admin:
        url = scratch.create_database(admin, "seg_bench_ui")
        # Airflow's metadata database: token checks (revoked tokens) read it on every request, as in the server.
        airflow_url = scratch.create_database(admin, "seg_bench_ui_airflow")
        try:
            os.environ[admin_env] = url
            os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = airflow_url.replace(
                "postgresql://", "postgresql+psycopg2://", 1
            )
            return _run(args, url)
        finally:
            scratch.drop_database(admin, url)
            scratch.drop_database(admin, airflow_url)


def _run(args: argparse.Namespace, url: str) -> int:
    from segmentation import distributions, tasks
    from segmentation.columns import ATTRIBUTE_COLUMNS
    from segmentation.db import connect, reset_url_cache
    from segmentation.migrations import migrate

    reset_url_cache()
    migrate(url)
    from segmentation.loading import load_customers, to_raw_text
    from segmentation.synthetic import generate_customers

    started = time.perf_counter()
    load_customers(
        to_raw_text(generate_customers(TRAINED, labelled_share=0.6, seed=1)),
        run_id="bench",
        url=os.environ["SEGMENTATION_DATABASE_URL"],
    )
    tasks.run_nightly("bench-train")
    pipeline_s = time.perf_counter() - started

    started = time.perf_counter()
    with connect(os.environ["SEGMENTATION_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM segmentation.model_versions WHERE status = 'champion'")
        version = cur.fetchone()[0]
        cur.execute(BULK_SQL, {"first": TRAINED + 1, "last": args.rows, "version": version})
    with connect(os.environ["SEGMENTATION_DATABASE_URL"]) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    tasks.start_run("bench-night", "segmentation_nightly")
    counts = tasks.finalise("bench-night")
    # The rows above came in behind the pipeline's back (no rebuild shards counted them): the distributions
    # are recomputed by one scan, as finalise does on a night that scored more than 5 % of the customers.
    with connect(os.environ["SEGMENTATION_DATABASE_URL"]) as conn, conn.cursor() as cur:
        distributions.record_segment_distributions(cur, "bench-night")
    finalise_s = time.perf_counter() - started
    with connect(os.environ["SEGMENTATION_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE segmentation.pipeline_runs SET steps = steps || (
                   SELECT steps - 'finalise' FROM segmentation.pipeline_runs WHERE run_id = 'bench-train')
               WHERE run_id = 'bench-night'"""
        )
        cur.execute(HISTORY_SQL, {"run": "bench-night", "columns": list(ATTRIBUTE_COLUMNS)})
    assert counts["customers"] == args.rows, counts
    with connect(os.environ["SEGMENTATION_DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        server_version = cur.fetchone()[0].split()[0]

    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.utils.db import initdb
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from segmentation.explain import BACKGROUND_ROWS
    from segmentation.ui.app import create_app
    from segmentation.ui.champion import WHAT_IF_BACKGROUND_ROWS

    initdb()
    token = init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    parent = FastAPI()
    parent.mount("/segmentation", create_app())
    client = TestClient(parent, base_url="http://localhost:8080")
    client.cookies.set("_token", token)
    rng = random.Random(7)

    def some_id() -> int:
        return rng.randint(1, args.rows)

    form = {k: str(v) for k, v in PAYLOAD.items()}
    first = time.perf_counter()
    response = client.post("/segmentation/api/predict", json=PAYLOAD)
    first_ms = (time.perf_counter() - first) * 1000
    assert response.status_code == 200, response.text
    assert response.json()["reasons"], "the what-if must be timed with its reasons"
    some_customer = client.get(f"/segmentation/api/customers/{some_id()}").json()
    assert some_customer["reasons"], "the customer page must be timed with its reasons"
    cases = [
        ("page `/segmentation/` (overview)", lambda: client.get("/segmentation/")),
        ("page `/segmentation/models`", lambda: client.get("/segmentation/models")),
        ("page `/segmentation/quality`", lambda: client.get("/segmentation/quality")),
        ("page `/segmentation/customers/{id}` (random id)", lambda: client.get(f"/segmentation/customers/{some_id()}")),
        ("page `/segmentation/what-if` (form)", lambda: client.get("/segmentation/what-if")),
        ("page `/segmentation/what-if` (submitted)", lambda: client.post("/segmentation/what-if", data=form)),
        ("`GET /segmentation/api/summary`", lambda: client.get("/segmentation/api/summary")),
        ("`GET /segmentation/api/models`", lambda: client.get("/segmentation/api/models")),
        ("`GET /segmentation/api/quality`", lambda: client.get("/segmentation/api/quality")),
        ("`GET /segmentation/api/customers/{id}`", lambda: client.get(f"/segmentation/api/customers/{some_id()}")),
        ("`POST /segmentation/api/predict` (after the first call)",
         lambda: client.post("/segmentation/api/predict", json=PAYLOAD)),
    ]  # fmt: skip
    for _, call in cases:  # warm-up: connection pool, templates
        call()
    rows = [_row(name, _timed(call, args.repeat)) for name, call in cases]
    command = f"flock /work/bench.lock .venv/bin/python bench/ui.py {shlex.join(argv_or_default(args))}".rstrip()
    text = "\n".join(
        [
            SECTION,
            "",
            f"`{command}` on {time.strftime('%Y-%m-%d')}, this machine ({os.cpu_count()} cores, "
            f"Python {platform.python_version()}, PostgreSQL {server_version}).",
            "",
            f"- {args.rows:,} customers: {TRAINED:,} through the pipeline ({pipeline_s:.0f} s including training), "
            f"the rest made in SQL ({load_s:.0f} s including VACUUM ANALYZE).",
            f"- The finalise that pre-aggregates what the pages read (shares, quality figures, per-segment attribute "
            f"distributions in one scan): {finalise_s:.1f} s at {args.rows:,} customers.",
            f"- What-if, first call in a process (loads the champion from the registry, checks its sha256 and reads "
            f"its explanation background): {first_ms:.0f} ms.",
            f"- With reasons (exact Shapley values over the nine attributes): the customer page and API use "
            f"`explain.explain_customer` ({BACKGROUND_ROWS} stored background rows, with the per-process cached "
            f"champion, which scored every customer here); the what-if uses the cached champion and the first "
            f"{WHAT_IF_BACKGROUND_ROWS} of its stored background rows.",
            "",
            "In process through FastAPI's TestClient with a real Airflow token (no network); milliseconds per request:",
            "",
            "| request | median ms | p95 ms | requests |",
            "|---|---|---|---|",
            *rows,
            "",
            "Targets: every page under 300 ms at 5,000,000 customers, the what-if under 100 ms after the first call.",
            f"The champion here was trained with `SEGMENTATION_CANDIDATES={args.candidates}` (command: "
            f"`.venv/bin/python bench/ui.py --candidates {args.candidates} --write`); reasons cost more for a larger "
            'model ("Explanations" above).',
            "",
        ]
    )
    publish(SECTION, text, write=args.write)
    return 0


def argv_or_default(args: argparse.Namespace) -> list[str]:
    out = []
    if args.rows != 5_000_000:
        out += ["--rows", str(args.rows)]
    if args.repeat != 30:
        out += ["--repeat", str(args.repeat)]
    return [*out, "--write"] if args.write else out


if __name__ == "__main__":
    sys.exit(main())
