"""Child processes of the scoring bench, each in a fresh interpreter as an Airflow task runs: one scoring shard
(prints its figures as JSON) or a warm-up that imports the package and loads the model.

    python bench/scoring_child.py shard RUN_ID SHARD MODEL_VERSION
    python bench/scoring_child.py warm MODEL_VERSION
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def score_one_shard(run_id: str, shard: int, model_version: int) -> dict[str, Any]:
    """Score one planned shard; its rows, seconds, phases and peak memory.

    Peak RSS is the process's own high-water mark (VmHWM). Linux's ru_maxrss of a process started by
    fork+exec also carries the parent's high-water mark at the fork (the bench parent holds N..5N-row frames),
    so it is reported beside VmHWM but not judged.
    """
    from segmentation import tasks
    from segmentation.scoring import peak_rss_mb

    started = time.perf_counter()
    figures = tasks.score_shard(run_id, shard, model_version)
    return {
        "rows": figures["rows"],
        "seconds": round(time.perf_counter() - started, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "phases": figures["phases"],
    }


def warm(model_version: int) -> None:
    """Import the package and load the model once, so that later children find compiled bytecode."""
    from segmentation import registry
    from segmentation.config import get_settings
    from segmentation.db import connect
    from segmentation.signing import signing_key

    settings = get_settings()  # the bench hands the database URL down through the environment
    with connect(str(settings.database_url), settings) as conn, conn.cursor() as cur:
        registry.load_model(cur, model_version, settings.model_cache_dir, key=signing_key(settings))


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "shard":
        print(json.dumps(score_one_shard(args[0], int(args[1]), int(args[2]))))
    elif command == "warm":
        warm(int(args[0]))
    else:
        raise SystemExit(f"unknown child command {command!r}; expected shard or warm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
