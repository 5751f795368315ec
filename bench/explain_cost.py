"""What reasons cost: seconds per customer of segmentation.explain (exact Shapley values, 2^9 coalitions against
the background stored with a model version) for the usual champion, single-threaded, against what storing them
with every changed customer's ``segment_history`` row would add to a nightly run (BENCHMARKS.md, "Scoring").

    python bench/explain_cost.py [--customers 100] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks_md import publish
from threadpoolctl import threadpool_limits

from segmentation.candidates import build_candidate
from segmentation.columns import MODEL_INPUT_COLUMNS, SEGMENT
from segmentation.explain import BACKGROUND_ROWS, explain_frame
from segmentation.features import derive_features
from segmentation.synthetic import generate_customers

SECTION = "## Explanations"
# BENCHMARKS.md, "Scoring", step (d): a nightly run with 10,000 changed customers, end to end.
NIGHTLY_CHANGED, NIGHTLY_SECONDS = 10_000, 8.26


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--model", default="hgb_rf_vote")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    frame = derive_features(generate_customers(20_000, labelled_share=1.0, seed=3))
    frame = frame.loc[frame[SEGMENT].notna()]
    train, customers = frame.iloc[:15_000], frame.iloc[15_000 : 15_000 + args.customers]
    with threadpool_limits(1):
        model = build_candidate(args.model, 0).fit(train.loc[:, list(MODEL_INPUT_COLUMNS)], train[SEGMENT])
        background = train.sample(BACKGROUND_ROWS, random_state=0)
        started = time.perf_counter()
        explain_frame(model, customers, background)
        per_customer = (time.perf_counter() - started) / len(customers)
    nightly = per_customer * NIGHTLY_CHANGED
    command = " ".join(argv if argv is not None else sys.argv[1:])
    text = (
        f"{SECTION}\n\n"
        f"Command: `python bench/explain_cost.py {command}`. Model: `{args.model}` fitted on 15,000 "
        f"generated customers; {len(customers)} other customers explained one by one against {BACKGROUND_ROWS} "
        "background rows, one native thread.\n\n"
        "| figure | value |\n|---|---|\n"
        f"| seconds per customer (`segmentation explain`, `predict`) | {per_customer:.3f} |\n"
        f"| reasons for a nightly run's {NIGHTLY_CHANGED:,} changed customers, one core | {nightly:,.0f} s |\n"
        f'| that nightly run without them ("Scoring", step (d)) | {NIGHTLY_SECONDS} s |\n'
        f"| added share of the run's time | {nightly / NIGHTLY_SECONDS * 100:,.0f} % (limit 20 %) |\n\n"
        "So reasons are computed on demand only (`segmentation explain`, `segmentation predict`) and not stored "
        "with `segment_history` rows.\n"
    )
    publish(SECTION, text, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
