"""Scoring speed and memory: a naive pandas baseline, the COPY floor, the full rescore and the nightly increment,
at N and 5×N.

Usage:

    .venv/bin/python bench/scoring.py --rows 200000 [--workers 2] [--shard-size 50000]
        [--candidates hist_gradient_boosting,...] [--skip-5n] [--write]

One run, on the same generated customers and the same champion model (trained once by the pipeline on a
row-capped sample: SEGMENTATION_TRAIN_ROW_CAP=20000, SEGMENTATION_CV_FOLDS=2, candidates from ``--candidates``
or the default list), measures end to end:

- (a) naive pandas: ``pd.read_sql`` of the feature rows, ``predict_proba`` of all rows in one process,
  ``DataFrame.to_sql(if_exists="append")`` into a fresh plain scratch table;
- (b) the floor: COPY out (``read_features``), the same ``predict_proba`` (``predict_frame``) in one process,
  binary COPY into an UNLOGGED scratch table, no upsert;
- (c) the full rescore through the real code path (``customer_segments`` and ``segment_history`` truncated
  first, untimed, so the plan chooses the build-and-swap path): ``plan_scoring``, every shard by
  ``score_shard`` in ``--workers`` parallel subprocesses (one fresh process per shard, like an Airflow task),
  ``finalise`` (which publishes: primary key, history diff, swap);
- (d) the nightly incremental run after 1% of customers changed (their age, reloaded with ``load_customers``):
  ``clean``, ``build_features``, plan, shards and finalise as in (c); the per-process start-up of its shard
  processes (interpreter start and package import before ``score_shard`` runs, and its model load, whose
  unpickling imports scikit-learn; none of it depends on the rows) is reported apart;
- (e) the full rescore at 5×N (4N more customers loaded, cleaned and featurised untimed), as (c);
- (f) the increment of the same number of changed customers as (d) on the 5×N table, as (d);
- peak RSS (the process's own high-water mark VmHWM; ``ru_maxrss`` shown too) of the scoring shards at N and
  5×N. ``--skip-5n`` skips (e) and (f).

Threads: (a) and (b) run with one native thread per core (the libraries' default, and what a floor must use,
since (c) uses every core through its parallel shards); training, clean and features run under
``threadpool_limits(1)``; every shard subprocess gets OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1.
Shard subprocesses share a bytecode cache in the temp folder (PYTHONPYCACHEPREFIX, warmed by one untimed
child), as an installed worker has .pyc files.

Uses SEGMENTATION_DATABASE_URL when set (a throw-away database is created next to it), otherwise an embedded
server in a temporary folder; the database and the server are removed at the end, also on failure. Prints a
markdown report; ``--write`` replaces (or appends) only the "## Scoring" section of BENCHMARKS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: tests.scratch

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from benchmarks_md import publish
from threadpoolctl import threadpool_limits

from segmentation import registry, tasks
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, MODEL_INPUT_COLUMNS, PROBABILITY_COLUMNS, SEGMENTS
from segmentation.config import PROJECT_ROOT, get_settings
from segmentation.db import connect, get_engine, redact, reset_url_cache
from segmentation.migrations import migrate
from segmentation.pgcopy import copy_binary_in, copy_frame_out
from segmentation.scoring import FEATURE_COLUMNS_SQL, predict_frame, read_features
from tests import scratch
from tests.helpers import db_url, model_key

SECTION = "## Scoring"
SCRATCH = "bench_scratch"
LABELLED_SHARE = 0.1
CHANGED_SHARE = 0.01
CORES = os.cpu_count() or 1
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TARGETS = {
    "floor": 1.3,  # (c)/(b) at most
    "throughput": 0.9,  # (e) rows/s over (c) rows/s at least
    "increment_growth": 1.25,  # (f)/(d) at most
    "increment_seconds": 3.0,  # (d) without the per-process start-up, at most
    "plan_growth": 5.5,  # plan at 5×N over plan at N, at most
    "rss_mb": 600.0,
    "growth": 0.10,
}

CHILD = Path(__file__).resolve().parent / "scoring_child.py"


@dataclass(frozen=True)
class Timing:
    """One timed step; ``key`` is its letter in the report, (a) to (f)."""

    key: str
    step: str
    rows: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


class Laps:
    """Seconds per phase of one timed step."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return self.last - self.started


@dataclass
class Rescore:
    """A plan + shards + finalise run (with the clean and features steps for the increment)."""

    rows: int = 0
    seconds: float = 0.0
    shards: int = 0
    peak_rss_mb: float = 0.0
    ru_maxrss_mb: float = 0.0
    shard_seconds: list[float] = field(default_factory=list)
    # Per shard process: wall seconds minus the seconds of score_shard (interpreter start, package import).
    startup_seconds: list[float] = field(default_factory=list)
    # Seconds per phase inside finalise: a full rescore's publish, run metrics, UI distributions.
    publish: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    # Wall seconds of plan_scoring, of all shards (processes included) and of finalise.
    steps: dict[str, float] = field(default_factory=dict)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _use_database(url: str) -> None:
    """Point the package at the throw-away database and migrate it."""
    os.environ["SEGMENTATION_DATABASE_URL"] = url
    reset_url_cache()
    migrate(db_url())
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCRATCH}")


def _add_customers(n: int, start_id: int, seed: int) -> None:
    from segmentation.loading import load_customers, to_raw_text
    from segmentation.synthetic import generate_customers

    customers = generate_customers(n, labelled_share=LABELLED_SHARE, seed=seed, start_id=start_id)
    load_customers(to_raw_text(customers), run_id="bench-load", url=db_url())


def _outside_transaction(*statements: str) -> None:
    """Run maintenance statements (VACUUM, CHECKPOINT) that cannot run inside a transaction, untimed."""
    with connect(db_url()) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.autocommit = False


def _settle() -> None:
    """VACUUM ANALYZE the customer tables, so that autovacuum's catch-up after a bulk set-up does not run
    inside a timed step."""
    _outside_transaction(
        """VACUUM (ANALYZE) segmentation.customers, segmentation.clean_customers,
           segmentation.customer_features, segmentation.clean_pending, segmentation.features_pending,
           segmentation.score_pending"""
    )


def _checkpoint() -> None:
    """VACUUM (ANALYZE) what the rescore wrote, then CHECKPOINT, before an increment: it should not pay for
    autovacuum's pass over the rescore's rows or the write-back of its dirty pages (5,000,000 rows and as many
    history rows at 5×N), which a nightly increment, a day after a rescore, does not meet."""
    _outside_transaction("VACUUM (ANALYZE) segmentation.customer_segments, segmentation.segment_history", "CHECKPOINT")


def _train_champion() -> tuple[int, str, dict[str, float]]:
    """The nightly steps up to the retrain (run_nightly without its in-process scoring); the champion and the
    seconds of the first clean and features steps."""
    run_id = "bench-setup"
    tasks.start_run(run_id, "bench")
    first = {"clean": tasks.clean(run_id)["seconds"], "features": tasks.build_features(run_id)["seconds"]}
    log(f"first clean and features of every customer: {first}")
    retrain = tasks.retrain_if_due(run_id)
    if not retrain.get("promoted"):
        raise RuntimeError(f"the bench needs a champion; the retrain did not promote one: {retrain}")
    with connect(db_url()) as conn, conn.cursor() as cur:
        current = registry.champion(cur)
    assert current is not None
    return current.version, current.model_name, first


def _load_model(version: int) -> Any:
    with connect(db_url()) as conn, conn.cursor() as cur:
        return registry.load_model(cur, version, get_settings().model_cache_dir, key=model_key())


def _naive_pandas(version: int) -> Timing:
    """(a) read_sql, predict_proba on everything, to_sql(append) into a fresh plain table."""
    engine = get_engine()
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {SCRATCH}.naive_scores")
    laps = Laps()
    model = _load_model(version)
    laps.lap("load model")
    columns = ", ".join((CUSTOMER_ID, *MODEL_INPUT_COLUMNS))
    features = pd.read_sql(f"SELECT {columns} FROM segmentation.customer_features", engine)
    laps.lap("read_sql")
    proba = model.predict_proba(features[list(MODEL_INPUT_COLUMNS)])
    classes = [str(c) for c in model.classes_]
    out = pd.DataFrame({CUSTOMER_ID: features[CUSTOMER_ID], "segment": np.asarray(classes)[proba.argmax(axis=1)]})
    for segment, column in zip(SEGMENTS, PROBABILITY_COLUMNS, strict=True):
        out[column] = proba[:, classes.index(segment)]
    laps.lap("predict_proba")
    out.to_sql("naive_scores", engine, schema=SCRATCH, if_exists="append", index=False)
    laps.lap("to_sql")
    return Timing("a", "naive pandas: read_sql, predict_proba, to_sql", len(out), laps.total, laps.phases)


def _copy_floor(version: int) -> Timing:
    """(b) COPY out, predict_frame, binary COPY into an UNLOGGED table; no upsert."""
    columns = [CUSTOMER_ID, "segment", *PROBABILITY_COLUMNS, "source_updated_at"]
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {SCRATCH}.floor_scores")
        cur.execute(
            f"CREATE UNLOGGED TABLE {SCRATCH}.floor_scores (customer_id bigint, segment char(1), "
            "p_a double precision, p_b double precision, p_c double precision, p_d double precision, "
            "source_updated_at timestamptz)"
        )
    laps = Laps()
    with connect(db_url()) as conn, conn.cursor() as cur:
        model = registry.load_model(cur, version, get_settings().model_cache_dir, key=model_key())
        laps.lap("load model")
        features = read_features(cur, f"SELECT {FEATURE_COLUMNS_SQL} FROM segmentation.customer_features AS f", {})
        laps.lap("COPY out")
        scored = predict_frame(model, features)
        scored["source_updated_at"] = features["source_updated_at"].to_numpy()
        laps.lap("predict_frame")
        rows = copy_binary_in(cur, scored, f"{SCRATCH}.floor_scores", columns)
    laps.lap("binary COPY in + commit")
    return Timing("b", "floor: COPY out, predict_frame, binary COPY to UNLOGGED", rows, laps.total, laps.phases)


def _child(*args: str) -> str:
    """Run ``scoring_child.py`` with ``args`` in a fresh single-threaded interpreter; its stdout."""
    env = {**os.environ, **ONE_THREAD}
    out = subprocess.run(
        [sys.executable, str(CHILD), *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out.stdout


def _warm_children(version: int) -> None:
    """One untimed child that imports the package and loads the model, filling the bytecode cache."""
    _child("warm", str(version))


def _run_shard(run_id: str, shard: int, version: int) -> dict[str, Any]:
    """One shard in its own single-threaded interpreter; its figures and the process's wall seconds."""
    started = time.perf_counter()
    figures = json.loads(_child("shard", run_id, str(shard), str(version)).strip().splitlines()[-1])
    return {**figures, "wall": time.perf_counter() - started}


def _plan_shards_finalise(run_id: str, workers: int, result: Rescore) -> None:
    """plan_scoring, every shard from a shared queue in ``workers`` subprocesses at a time, finalise."""
    laps = Laps()
    planned = tasks.plan_scoring(run_id)
    laps.lap("plan")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        shards = list(pool.map(lambda p: _run_shard(run_id, p["shard"], p["model_version"]), planned))
    laps.lap("shards")
    finalised = tasks.finalise(run_id)
    laps.lap("finalise")
    # The publish's own phases (a full rescore), then the rest of finalise: run metrics, UI distributions.
    rest = {k: v for k, v in finalised.get("phases", {}).items() if k != "publish"}
    result.publish = {**finalised.get("publish", {}).get("phases", {}), **rest}
    result.steps = laps.phases
    result.shards = len(planned)
    result.rows = sum(s["rows"] for s in shards)
    result.peak_rss_mb = max((s["peak_rss_mb"] for s in shards), default=0.0)
    result.ru_maxrss_mb = max((s["ru_maxrss_mb"] for s in shards), default=0.0)
    result.shard_seconds = [s["seconds"] for s in shards]
    # Fixed per process, whatever its rows: interpreter start, imports, and the model load (whose unpickling
    # imports scikit-learn): the fixed start-up that the (d) target excludes.
    result.startup_seconds = [s["wall"] - s["seconds"] + s["phases"].get("load", 0.0) for s in shards]
    result.phases = {k: sum(s["phases"][k] for s in shards) for k in (shards[0]["phases"] if shards else {})}


def _truncate_segments() -> None:
    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE segmentation.customer_segments, segmentation.segment_history")


def _full_rescore(run_id: str, workers: int) -> Rescore:
    """(c) Every customer rescored through the real path; the truncate beforehand is not timed."""
    _truncate_segments()
    result = Rescore()
    started = time.perf_counter()
    tasks.start_run(run_id, "bench")
    _plan_shards_finalise(run_id, workers, result)
    result.seconds = time.perf_counter() - started
    return result


def _change_customers(count: int) -> int:
    """Reload ``count`` customers (those with an age) with their age changed by one year; returns how many."""
    from segmentation.loading import load_customers

    query = f"""SELECT customer_id, {", ".join(ATTRIBUTE_COLUMNS)} FROM segmentation.customers
                WHERE age IS NOT NULL ORDER BY (customer_id * 2654435761) % 4294967296 LIMIT {count}"""
    with connect(db_url()) as conn, conn.cursor() as cur:
        raw = copy_frame_out(cur, query)
    age = pd.to_numeric(raw["age"]).round().astype("int64")
    raw["age"] = np.where(age >= 100, age - 1, age + 1).astype(str)
    loaded = load_customers(raw.astype(object).where(raw.notna(), None), run_id="bench-change", url=db_url())
    return loaded.updated


def _increment(run_id: str, workers: int) -> tuple[Rescore, dict[str, Any], dict[str, float]]:
    """(d) The nightly run after the change: clean, features, plan, shards, finalise; also its phases."""
    result = Rescore()
    laps = Laps()
    tasks.start_run(run_id, "bench")
    cleaned = tasks.clean(run_id)
    laps.lap("start_run + clean")
    features = tasks.build_features(run_id)
    laps.lap("build_features")
    _plan_shards_finalise(run_id, workers, result)
    laps.lap("plan + shards + finalise")
    result.seconds = laps.total
    return result, {"clean": cleaned, "features": features}, laps.phases


def _grow_to_5n(n_rows: int) -> None:
    """Load 4N more customers and bring them through clean and features (untimed)."""
    _add_customers(4 * n_rows, n_rows + 1, seed=2)
    tasks.clean("bench-grow")
    tasks.build_features("bench-grow")


def _ratio_line(name: str, value: float, target: str, met: bool, fmt: str = "{:.3f}") -> str:
    return f"| {name} | {fmt.format(value)} | {target} | {'met' if met else 'NOT MET'} |"


def _startup(result: Rescore) -> float:
    """Mean per-process start-up of a run's shard processes."""
    return sum(result.startup_seconds) / max(len(result.startup_seconds), 1)


def report(
    *,
    command: str,
    context: str,
    steps: list[Timing],
    full: Rescore,
    increment: Rescore,
    big: Rescore | None,
    big_increment: Rescore | None,
) -> str:
    """The markdown section: steps, ratios against the targets, peak RSS."""
    by_key = {t.key: t for t in steps}
    b, c, d = (by_key[k].seconds for k in "bcd")
    startup = _startup(increment)  # (d) runs one shard process when the change fits one shard
    lines = [
        SECTION,
        "",
        context,
        "",
        f"Command: `{command}`",
        "",
        "| step | rows | seconds | rows/s |",
        "|---|---|---|---|",
        *(f"| ({t.key}) {t.step} | {t.rows:,} | {t.seconds:.2f} | {t.rows_per_second:,.0f} |" for t in steps),
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
        f"| (a)/(c), reference only | {by_key['a'].seconds / c:.2f}× | none | |",
        _ratio_line("(c) full rescore / (b) floor", c / b, "≤ 1.3", c / b <= TARGETS["floor"], "{:.2f}"),
    ]
    if big is not None and big_increment is not None:
        e, f = by_key["e"], by_key["f"]
        throughput = e.rows_per_second / by_key["c"].rows_per_second
        lines += [
            _ratio_line(
                "(e) 5×N throughput / (c) N throughput",
                throughput,
                "≥ 0.9",
                throughput >= TARGETS["throughput"],
                "{:.2f}",
            ),
            _ratio_line(
                "(f) increment at 5×N / (d) increment at N",
                f.seconds / d,
                "≤ 1.25",
                f.seconds / d <= TARGETS["increment_growth"],
                "{:.2f}",
            ),
        ]
    lines.append(
        _ratio_line(
            f"(d) increment without the per-process start-up ({startup:.2f} s), s",
            d - startup,
            "≤ 3 s",
            d - startup <= TARGETS["increment_seconds"],
            "{:.2f}",
        )
    )
    if big is not None:
        plan_growth = big.steps["plan"] / max(full.steps["plan"], 1e-9)
        lines.append(
            _ratio_line(
                f"plan at 5×N ({big.steps['plan']:.2f} s) / plan at N ({full.steps['plan']:.2f} s)",
                plan_growth,
                "≤ 5.5",
                plan_growth <= TARGETS["plan_growth"],
                "{:.2f}",
            )
        )
    rss_n = max(full.peak_rss_mb, increment.peak_rss_mb)
    lines.append(_ratio_line("peak RSS of a shard at N, MB", rss_n, "< 600", rss_n < TARGETS["rss_mb"], "{:.1f}"))
    if big is None or big_increment is None:
        lines.append("| (e), (f), peak RSS at 5×N | skipped (`--skip-5n`) | | |")
    else:
        rss_big = max(big.peak_rss_mb, big_increment.peak_rss_mb)
        growth = rss_big / rss_n - 1
        lines.append(
            _ratio_line("peak RSS of a shard at 5×N, MB", rss_big, "< 600", rss_big < TARGETS["rss_mb"], "{:.1f}")
        )
        lines.append(_ratio_line("peak RSS growth N → 5×N", growth, "< 10 %", growth < TARGETS["growth"], "{:+.1%}"))
    lines.append("")
    lines += [_phase_note(t) for t in steps if t.phases]
    lines += [_shard_note("(c)", full), _shard_note("(d)", increment)]
    if big is not None:
        lines.append(_shard_note("(e) 5×N rescore", big))
    if big_increment is not None:
        lines.append(_shard_note("(f) 5×N increment", big_increment))
    return "\n".join(lines) + "\n"


def _phase_note(timing: Timing) -> str:
    phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timing.phases.items())
    return f"- ({timing.key}) phases: {phases}."


def _shard_note(label: str, result: Rescore) -> str:
    inner = ", ".join(f"{s:.1f}" for s in result.shard_seconds)
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in result.phases.items())
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in result.steps.items())
    return (
        f"- {label}: {result.rows:,} rows in {result.shards} shard(s) ({result.rows / max(result.shards, 1):,.0f} "
        f"per shard); wall time: {steps}; "
        f"seconds inside each shard process (after interpreter start and package import): {inner}; "
        f"per-process start-up (interpreter start, package import and model load): "
        f"{', '.join(f'{x:.2f}' for x in result.startup_seconds)}; "
        f"summed over the shards: {phases}; "
        + (
            f"inside finalise: {', '.join(f'{k} {v:.2f} s' for k, v in result.publish.items())}; "
            if result.publish
            else ""
        )
        + f"max peak RSS {result.peak_rss_mb:.1f} MB "
        f"(ru_maxrss {result.ru_maxrss_mb:.1f} MB)."
    )


def _command(argv: list[str], admin_named: str | None) -> str:
    prefix = f"SEGMENTATION_DATABASE_URL={redact(admin_named)} " if admin_named else ""
    return prefix + ".venv/bin/python bench/scoring.py " + " ".join(shlex.quote(a) for a in argv)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="N, the customers scored")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="parallel shard processes")
    parser.add_argument("--shard-size", type=int, default=None, help="rows per shard (default: the setting)")
    parser.add_argument("--candidates", default=None, help="SEGMENTATION_CANDIDATES for the one training")
    parser.add_argument("--skip-5n", action="store_true", help="skip the 5×N part, (e) and (f)")
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    return parser.parse_args(argv)


def _configure(args: argparse.Namespace, tmp: Path) -> None:
    os.environ["SEGMENTATION_DATA_DIR"] = str(tmp / "data")
    os.environ["SEGMENTATION_MODELS_DIR"] = str(tmp / "models")
    os.environ["SEGMENTATION_TRAIN_ROW_CAP"] = "20000"
    os.environ["SEGMENTATION_CV_FOLDS"] = "2"
    # A throw-away database named by URL: sign its models with a throw-away key.
    os.environ.setdefault("SEGMENTATION_MODEL_SIGNING_KEY", secrets.token_hex(32))
    if args.candidates:
        os.environ["SEGMENTATION_CANDIDATES"] = args.candidates
    if args.shard_size:
        os.environ["SEGMENTATION_SHARD_SIZE"] = str(args.shard_size)
    # Shard processes keep compiled bytecode in the temp folder, as an installed worker keeps its .pyc files;
    # without it every shard recompiles pandas and scikit-learn (this sandbox sets PYTHONDONTWRITEBYTECODE).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")


def _measure(args: argparse.Namespace, command: str) -> str:
    """Everything after the database exists; returns the report."""
    bench_started = time.perf_counter()
    load = os.getloadavg()[0]
    n = args.rows
    log(f"loading {n:,} customers")
    _add_customers(n, 1, seed=1)
    log("clean, features, train the champion")
    started = time.perf_counter()
    version, model_name, first = _train_champion()
    train_seconds = time.perf_counter() - started
    settings = get_settings()
    _settle()
    _warm_children(version)
    # (a) and (b) run in one process with the libraries' default of one native thread per core, as a naive
    # job would, and as a floor must: (c) uses every core through its parallel shards.
    with threadpool_limits(CORES):
        log("(a) naive pandas")
        steps = [_naive_pandas(version)]
        log("(b) COPY floor")
        steps.append(_copy_floor(version))
    log("(c) full rescore")
    full = _full_rescore("bench-full", args.workers)
    steps.append(
        Timing(
            "c",
            f"full rescore: plan, {full.shards} shard(s) on {args.workers} workers, finalise",
            full.rows,
            full.seconds,
        )
    )
    changed_count = max(1, round(n * CHANGED_SHARE))
    changed = _change_customers(changed_count)
    _checkpoint()
    log(f"(d) increment after {changed:,} changed customers")
    increment, figures, phases = _increment("bench-increment", args.workers)
    steps.append(
        Timing(
            "d",
            f"nightly increment ({changed:,} changed): clean, features, plan, shards, finalise",
            increment.rows,
            increment.seconds,
            phases,
        )
    )
    big = big_increment = None
    if not args.skip_5n:
        log(f"(e) growing to {5 * n:,} customers")
        _grow_to_5n(n)
        _settle()
        log("(e) rescore at 5×N")
        big = _full_rescore("bench-5n", args.workers)
        steps.append(
            Timing(
                "e",
                f"full rescore at 5×N: plan, {big.shards} shards on {args.workers} workers, finalise",
                big.rows,
                big.seconds,
            )
        )
        changed_big = _change_customers(changed_count)
        _checkpoint()
        log(f"(f) increment after {changed_big:,} changed customers at 5×N")
        big_increment, _, big_phases = _increment("bench-increment-5n", args.workers)
        steps.append(
            Timing(
                "f",
                f"nightly increment at 5×N ({changed_big:,} changed): clean, features, plan, shards, finalise",
                big_increment.rows,
                big_increment.seconds,
                big_phases,
            )
        )
    context = (
        f"Measured {dt.date.today().isoformat()} on {platform.node() or 'this machine'} ({os.cpu_count()} cores, "
        f"1-minute load average {load:.2f} before the bench started). N = "
        f"{n:,} generated customers ({LABELLED_SHARE:.0%} labelled). Champion: model version {version} "
        f"({model_name}), trained once in {train_seconds:.0f} s with SEGMENTATION_TRAIN_ROW_CAP=20000, "
        f"SEGMENTATION_CV_FOLDS=2, candidates {os.environ.get('SEGMENTATION_CANDIDATES') or 'default'}; every "
        f"step scores with it. Shard size {settings.shard_size:,}, chunk size {settings.chunk_size:,}. "
        f"Threads: (a) and (b) run with {CORES} native threads (threadpoolctl, one per core, the libraries' "
        "default); training, clean and features run under `threadpool_limits(1)`; each shard runs in a fresh "
        "subprocess (interpreter start, imports and model load included in the time) with "
        "OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1 and a bytecode "
        "cache (PYTHONPYCACHEPREFIX in the temp folder, filled by one untimed warm-up child; this sandbox sets "
        "PYTHONDONTWRITEBYTECODE and the venv has no .pyc files, which costs every fresh process about 2-3 s). "
        "(a) writes customer_id, segment, p_a..p_d with pandas' default `to_sql`; (b) and (c) also write "
        "source_updated_at. (c) and (e) truncate customer_segments and segment_history first (untimed), so "
        "the plan takes the build-and-swap path and the publish diff finds no live rows. After each bulk set-up "
        "(N customers loaded, cleaned and featurised; 4N more for (e)) the customer tables and the change queues "
        "(whose bulk takes left as many dead rows) are VACUUM ANALYZEd, "
        "untimed, so that autovacuum's catch-up does not fall into a timed step; (d) and (f) start after an "
        "untimed VACUUM (ANALYZE) of customer_segments and segment_history and a CHECKPOINT, so that they do not "
        "pay for autovacuum's pass over the rescore before them or the write-back of its pages. "
        "The first clean and features steps over all N customers (untimed set-up) took "
        f"{first['clean']:.1f} s and {first['features']:.1f} s. (d): clean saw "
        f"{figures['clean'].get('rows', 0):,} rows, features {figures['features'].get('rows', 0):,}. "
        "Peak RSS: VmHWM (the process's own RSS high-water mark) of the shard processes, max over the shards "
        "of a run; their `ru_maxrss` (shown in the notes) is not judged, because on Linux a process started by "
        "fork+exec inherits the parent's high-water mark in it, so it grows with the bench parent's frames."
    )
    text = report(
        command=command,
        context=context,
        steps=steps,
        full=full,
        increment=increment,
        big=big,
        big_increment=big_increment,
    )
    return text + f"\nBench wall time: {time.perf_counter() - bench_started:.0f} s.\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    command = _command(argv, os.environ.get("SEGMENTATION_DATABASE_URL"))
    with tempfile.TemporaryDirectory(prefix="segmentation-bench-") as folder:
        tmp = Path(folder)
        _configure(args, tmp)
        with scratch.scratch_database(tmp, prefix="seg_bench") as url:
            _use_database(url)
            with threadpool_limits(1):  # training and the parent's work single-threaded
                text = _measure(args, command)
    publish(SECTION, text, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
