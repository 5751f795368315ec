"""Nights through the command line at N and 5×N customers: does a night cost what changed, not the table?

    SEGMENTATION_DATABASE_URL=postgresql://root@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/cli_nights.py --rows 1000000 5000000 [--changes 10000] [--nights 3] [--write]

For each N in ``--rows``, on a throw-away database created next to ``SEGMENTATION_DATABASE_URL`` (an admin URL
on this machine; an embedded server in a temporary folder without it), dropped at the end:

1. set-up (untimed): N customers from ``segmentation.synthetic.generate_customers`` (``segmentation generate``'s
   default labelled share, 30 %), loaded with ``load_customers`` (COPY and upsert) in batches of 1,000,000; then
   the first full run, ``segmentation run`` as a CLI process, with a fast model (SEGMENTATION_CANDIDATES=
   logistic_regression, SEGMENTATION_CV_FOLDS=2, SEGMENTATION_TUNE_CANDIDATES=2,
   SEGMENTATION_TRAIN_ROW_CAP=20000); then one untimed warm-up night (the three commands below), which fills
   the bytecode cache;
2. (a) quiet nights: the database is settled (``VACUUM (ANALYZE)`` of the whole database, then ``CHECKPOINT``),
   then ``segmentation clean``, ``segmentation features`` and ``segmentation score`` run as separate CLI
   processes, one after another, as a user runs them, with nothing changed since the last run;
3. (b) nights with ``--changes`` changed customers: an UPDATE of that many rows of ``segmentation.customers``
   (age one year more, one less at 100; ``updated_at = now()``; ids spread evenly over the table from a random
   offset), then settled as in (a), then the same three commands.

Each command's time is the wall time of its process (interpreter start, imports, readiness check, the step,
its JSON summary). ``--nights`` nights of each kind are run, the sizes taking turns night by night (so that the
load of a shared machine falls on every size alike); the table shows the median per command and the median of
the nights' sums. CLI processes get a bytecode cache in the temp folder (PYTHONPYCACHEPREFIX; this
sandbox sets PYTHONDONTWRITEBYTECODE and the venv has no .pyc files), as an installed package has .pyc files.

``--keep`` leaves the databases in place (their URLs are logged) and ``--database N=URL`` measures an existing
database built by this script (set-up skipped), to compare two versions of the code on the same data.
``--write`` replaces (or appends) only the "## CLI nights at 1M and 5M customers" section of BENCHMARKS.md.
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
import random
import secrets
import shlex
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from typing import Any

from benchmarks_md import publish

from segmentation.config import PROJECT_ROOT
from segmentation.db import connect, redact, reset_url_cache
from tests import scratch

SECTION = "## CLI nights at 1M and 5M customers"
COMMANDS = ("clean", "features", "score")
TARGET = 1.25  # a night at 5×N over the same night at N, at most
LABELLED_SHARE = 0.3  # `segmentation generate`'s default
LOAD_BATCH = 1_000_000
FAST_MODEL = {
    "SEGMENTATION_CANDIDATES": "logistic_regression",
    "SEGMENTATION_CV_FOLDS": "2",
    "SEGMENTATION_TUNE_CANDIDATES": "2",
    "SEGMENTATION_TRAIN_ROW_CAP": "20000",
}
CLI = PROJECT_ROOT / ".venv" / "bin" / "segmentation"


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cli_env(url: str, tmp: Path) -> dict[str, str]:
    """The environment of the CLI processes: the bench database, its own data folder, key and bytecode cache."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        FAST_MODEL,
        SEGMENTATION_DATABASE_URL=url,
        SEGMENTATION_DATA_DIR=str(tmp / "data"),
        SEGMENTATION_MODELS_DIR=str(tmp / "models"),
        PYTHONPYCACHEPREFIX=str(tmp / "pycache"),
    )
    env.setdefault("SEGMENTATION_MODEL_SIGNING_KEY", secrets.token_hex(32))
    return env


def run_cli(env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    """One ``segmentation`` process: its wall seconds and its JSON summary. Exits on failure."""
    started = time.perf_counter()
    done = subprocess.run([str(CLI), *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"cli nights: `segmentation {' '.join(args)}` failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    try:
        summary = json.loads(done.stdout)
    except json.JSONDecodeError:
        summary = {}
    return seconds, summary


def outside_transaction(url: str, *statements: str) -> None:
    """Maintenance statements (VACUUM, CHECKPOINT) that cannot run inside a transaction."""
    with connect(url) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.autocommit = False


def settle(url: str) -> None:
    """A settled database: no dead rows or stale statistics left for autovacuum, no dirty pages to write back."""
    outside_transaction(url, "VACUUM (ANALYZE)", "CHECKPOINT")


def load(url: str, n: int) -> None:
    """N generated customers, loaded in batches with COPY and an upsert, as ``segmentation generate`` loads."""
    from segmentation.loading import load_customers, to_raw_text
    from segmentation.synthetic import generate_customers

    for start in range(0, n, LOAD_BATCH):
        rows = min(LOAD_BATCH, n - start)
        frame = generate_customers(rows, labelled_share=LABELLED_SHARE, seed=start // LOAD_BATCH, start_id=start + 1)
        load_customers(to_raw_text(frame), run_id="bench-load", url=url)
        log(f"  loaded {start + rows:,} / {n:,}")


def change(url: str, n: int, changes: int) -> int:
    """``changes`` customers evenly spread over ids 1..n from a random offset (another set each night): age one
    year more (one less at 100, so that it stays valid), updated now."""
    step = max(n // changes, 1)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE segmentation.customers
               SET age = CASE WHEN age !~ '^[0-9]{1,3}$' THEN age WHEN age::int >= 100 THEN (age::int - 1)::text
                              ELSE (age::int + 1)::text END,
                   updated_at = now()
               WHERE customer_id IN (SELECT generate_series(%s::bigint, %s::bigint, %s::bigint) LIMIT %s)""",
            (1 + random.randrange(step), n, step, changes),
        )
        return cur.rowcount


def night(url: str, env: dict[str, str]) -> dict[str, Any]:
    """The three commands of a night, each a fresh process: seconds, the rows each reported, and whether the
    score step recomputed the UI's attribute distributions (one scan of the table, by design once the customers
    scored since the last computation exceed 5 % of all; other nights carry them forward)."""
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    for command in COMMANDS:
        seconds[command], summary = run_cli(env, command)
        rows[command] = int(summary.get("rows", 0) or 0)
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """SELECT steps->'finalise'->'distributions'->>'computed_in' = run_id FROM segmentation.pipeline_runs
               WHERE steps ? 'finalise' ORDER BY started_at DESC LIMIT 1"""
        )
        row = cur.fetchone()
    recomputed = bool(row and row[0])
    return {"seconds": seconds, "rows": rows, "total": sum(seconds.values()), "recomputed": recomputed}


def median_night(nights: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds per command and of the nights' totals; the rows of the last night."""
    return {
        "seconds": {c: statistics.median(n["seconds"][c] for n in nights) for c in COMMANDS},
        "total": statistics.median(n["total"] for n in nights),
        "all": [(n["total"], n["recomputed"]) for n in nights],
        "rows": nights[-1]["rows"],
        "recomputed": sum(n["recomputed"] for n in nights),
    }


def set_up(url: str, n: int, env: dict[str, str]) -> dict[str, float]:
    """Migrate, load N customers, the first full run, settle, a warm-up night; seconds of each part."""
    from segmentation.migrations import migrate

    times: dict[str, float] = {}
    started = time.perf_counter()
    migrate(url)
    log(f"loading {n:,} customers")
    load(url, n)
    times["load"] = time.perf_counter() - started
    log("first full run: `segmentation run`")
    times["first run"], _ = run_cli(env, "run")
    settle(url)
    log("warm-up night (untimed)")
    night(url, env)
    return times


def measure(databases: dict[int, tuple[str, dict[str, str]]], args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    """Quiet nights, then nights with changes, each on a settled database; the sizes take turns night by night
    (in alternating order), so that a change in the machine's load falls on every size alike."""
    quiet: dict[int, list[dict[str, Any]]] = {n: [] for n in databases}
    changed: dict[int, list[dict[str, Any]]] = {n: [] for n in databases}
    for kind, nights in (("quiet", quiet), ("changed", changed)):
        for i in range(args.nights):
            for n in sorted(databases, reverse=bool(i % 2)):
                url, env = databases[n]
                updated = change(url, n, args.changes) if kind == "changed" else 0
                settle(url)
                nights[n].append(night(url, env))
                done = nights[n][-1]
                log(f"  N={n:,} {kind} night {i + 1} ({updated:,} changed): {done['total']:.2f} s {done['seconds']}")
    return {n: {"quiet": median_night(quiet[n]), "changed": median_night(changed[n])} for n in databases}


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n:,}"


def report(results: dict[int, dict[str, Any]], setups: dict[int, dict[str, float]], args: argparse.Namespace) -> str:
    sizes = sorted(results)
    lines = [
        "| N | night | clean s | features s | score s | night s (median) | nights' sums s "
        "| rows (clean/features/score) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        for kind, title in (("quiet", "(a) quiet"), ("changed", f"(b) {args.changes:,} changed")):
            r = results[n][kind]
            s = r["seconds"]
            rows = "/".join(f"{r['rows'][c]:,}" for c in COMMANDS)
            sums = ", ".join(f"{x:.2f}{'†' if recomputed else ''}" for x, recomputed in r["all"])
            lines.append(
                f"| {n:,} | {title} | {s['clean']:.2f} | {s['features']:.2f} | {s['score']:.2f} "
                f"| **{r['total']:.2f}** | {sums} | {rows} |"
            )
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        lines += ["", f"| ratio {_label(big)}/{_label(small)} | clean | features | score | night | target | |"]
        lines.append("|---|---|---|---|---|---|---|")
        for kind, title in (("quiet", "(a) quiet night"), ("changed", f"(b) night with {args.changes:,} changed")):
            a, b = results[small][kind], results[big][kind]
            per = " | ".join(f"{b['seconds'][c] / a['seconds'][c]:.2f}" for c in COMMANDS)
            ratio = b["total"] / a["total"]
            verdict = "met" if ratio <= TARGET else "NOT MET"
            lines.append(f"| {title} | {per} | **{ratio:.2f}** | ≤ {TARGET} | {verdict} |")
    if any(r[kind]["recomputed"] for r in results.values() for kind in ("quiet", "changed")):
        lines += [
            "",
            "†: that night's `segmentation score` recomputed the UI's attribute distributions (one scan of the "
            "scored customers, by design once the customers scored since the last computation exceed 5 % of all).",
        ]
    if setups:
        notes = "; ".join(
            f"N={n:,}: load {t['load']:.0f} s, first `segmentation run` {t['first run']:.0f} s"
            for n, t in sorted(setups.items())
        )
        lines += ["", f"Set-up (untimed in the table): {notes}."]
    return "\n".join(lines)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000], help="the sizes N")
    parser.add_argument("--changes", type=int, default=10_000, help="customers changed before each night (b)")
    parser.add_argument("--nights", type=int, default=3, help="nights of each kind per size (median reported)")
    parser.add_argument("--keep", action="store_true", help="leave the databases in place (URLs logged)")
    parser.add_argument(
        "--database", action="append", default=[], metavar="N=URL", help="measure this existing database for N"
    )
    parser.add_argument("--setup-only", action="store_true", help="build the databases (with --keep) and stop")
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    named = os.environ.get("SEGMENTATION_DATABASE_URL")
    command = (f"SEGMENTATION_DATABASE_URL={redact(named)} " if named else "") + ".venv/bin/python bench/cli_nights.py "
    command += " ".join(shlex.quote(a) for a in argv if not a.startswith("--database") and "=" not in a)
    existing = {int(k): v for k, v in (d.split("=", 1) for d in args.database)}
    load_avg = os.getloadavg()[0]
    started = time.perf_counter()
    setups: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="segmentation-cli-nights-") as folder, ExitStack() as stack:
        tmp = Path(folder)
        admin = stack.enter_context(scratch.scratch_server(tmp))
        databases: dict[int, tuple[str, dict[str, str]]] = {}
        for n in sorted(set(args.rows)):
            if n in existing:
                url = existing[n]
                env = cli_env(url, tmp / str(n))
                log(f"N={n:,}: existing database {redact(url)}; warm-up night (untimed)")
                night(url, env)
            else:
                url = scratch.create_database(admin, prefix="seg_cli_nights")
                if args.keep:
                    log(f"N={n:,}: database {redact(url)} (kept)")
                else:
                    stack.callback(scratch.drop_database, admin, url)
                env = cli_env(url, tmp / str(n))
                if args.keep and "SEGMENTATION_MODEL_SIGNING_KEY" not in os.environ:
                    log("--keep without SEGMENTATION_MODEL_SIGNING_KEY: later --database runs cannot load its model")
                setups[n] = set_up(url, n, env)
            reset_url_cache()
            databases[n] = (url, env)
        if args.setup_only:
            return 0
        results = measure(databases, args)
    context = (
        f"Measured {dt.date.today().isoformat()} on {platform.node() or 'this machine'} ({os.cpu_count()} cores, "
        f"1-minute load average {load_avg:.2f} before the bench started), PostgreSQL on 127.0.0.1 (default "
        "settings). Each figure is the wall time of a `segmentation` CLI process, as a user runs it (interpreter "
        "start, imports, readiness check, the step, its JSON summary), median over "
        f"{args.nights} nights of each kind, the sizes taking turns night by night (this machine is shared, its load "
        "varies); before every night the database is settled (`VACUUM (ANALYZE)`, "
        "`CHECKPOINT`). Data: `generate_customers` (30 % labelled), loaded with `load_customers`; first full run "
        "`segmentation run` with SEGMENTATION_CANDIDATES=logistic_regression, SEGMENTATION_CV_FOLDS=2, "
        "SEGMENTATION_TUNE_CANDIDATES=2, SEGMENTATION_TRAIN_ROW_CAP=20000, then one untimed warm-up night. "
        f"(b): before each night an UPDATE of {args.changes:,} rows of `segmentation.customers` (age + 1, "
        "`updated_at = now()`, ids spread evenly over the table from a random offset)."
    )
    text = (
        f"{SECTION}\n\n{context}\n\nCommand: `{command.strip()}`\n\n{report(results, setups, args)}\n\n"
        f"Bench wall time: {time.perf_counter() - started:.0f} s.\n"
    )
    publish(SECTION, text, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
