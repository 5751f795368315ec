"""Speed of the synthetic customer generator: rows per second for one large batch.

.venv/bin/python bench/generator.py [--rows 1000000] [--write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time

from benchmarks_md import publish

from segmentation.synthetic import generate_customers

SECTION = "## Generator"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frame = generate_customers(args.rows, seed=args.seed)
    seconds = time.perf_counter() - started
    text = (
        f"{SECTION}\n\nMeasured {dt.date.today().isoformat()} on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} cores). Command: `.venv/bin/python bench/generator.py --rows {args.rows}`\n\n"
        f"`generate_customers({args.rows:,})`: {len(frame):,} rows in {seconds:.2f} s "
        f"({len(frame) / seconds:,.0f} rows/s).\n"
    )
    publish(SECTION, text, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
