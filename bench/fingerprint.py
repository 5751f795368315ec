"""Fingerprint of the pipeline's output: the md5 of customer_segments after one nightly run on fixed data.

Runs only the command line (``segmentation init-db``, ``generate``, ``run``), so the fingerprint does not
depend on how the package is laid out inside: the same data and seed must give the same md5 before and after
a change that should not alter behaviour. Uses a throw-away database next to SEGMENTATION_DATABASE_URL (or
an embedded server in a temporary folder), dropped at the end.

    .venv/bin/python bench/fingerprint.py [--rows 3000] [--seed 1] [--csv FILE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: tests.scratch

import argparse
import os
import secrets
import subprocess
import tempfile

from segmentation.config import PROJECT_ROOT
from tests.scratch import scratch_database

FINGERPRINT_SQL = """
SELECT count(*), md5(string_agg(concat_ws(',', customer_id, segment, p_a, p_b, p_c, p_d), ';'
                                ORDER BY customer_id))
FROM segmentation.customer_segments
"""
CLI = [sys.executable, "-m", "segmentation.cli"]


def _cli(env: dict[str, str], *args: str) -> None:
    out = subprocess.run([*CLI, *args], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"segmentation {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-4000:]}")


def fingerprint(rows: int, seed: int, csvs: list[Path] | None = None) -> tuple[int, str]:
    """(rows scored, md5) of customer_segments after init-db, generate (or load-csv of ``csvs``) and one
    nightly run."""
    import psycopg2

    with (
        tempfile.TemporaryDirectory(prefix="segmentation-fingerprint-") as folder,
        scratch_database(Path(folder), prefix="seg_fingerprint") as url,
    ):
        env = {
            **os.environ,
            "SEGMENTATION_DATABASE_URL": url,
            "SEGMENTATION_DATA_DIR": str(Path(folder) / "data"),
            "SEGMENTATION_MODELS_DIR": str(Path(folder) / "models"),
            "SEGMENTATION_RANDOM_STATE": "42",
            # A throw-away database named by URL: sign its models with a throw-away key.
            "SEGMENTATION_MODEL_SIGNING_KEY": os.environ.get("SEGMENTATION_MODEL_SIGNING_KEY") or secrets.token_hex(32),
        }
        _cli(env, "init-db")
        if csvs:
            for csv in csvs:
                _cli(env, "load-csv", str(csv))
        else:
            _cli(env, "generate", "--rows", str(rows), "--seed", str(seed), "--labelled-share", "0.5")
        _cli(env, "run", "--run-id", "fingerprint")
        conn = psycopg2.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(FINGERPRINT_SQL)
                count, digest = cur.fetchone()
        finally:
            conn.close()
    return int(count), str(digest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--csv", type=Path, action="append", help="load this Kaggle-layout file instead (repeatable)")
    args = parser.parse_args(argv)
    count, digest = fingerprint(args.rows, args.seed, args.csv)
    source = ", ".join(p.name for p in args.csv) if args.csv else f"generated rows={args.rows}, seed={args.seed}"
    print(f"customer_segments: {count} rows, md5 {digest} ({source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
