"""Booster length: the previous, longer HistGradientBoosting settings against today's 100 x 0.08.

Same folds and seed as bench/model_quality.py's defaults (RepeatedStratifiedKFold 2x5, random_state 0) on the
real labelled file, one thread. The booster alone (previously 400 iterations x learning rate 0.02) and inside
the ``hgb_rf_vote`` soft vote (previously 200 x 0.04). Prints accuracy, log loss and predict_proba rows/s per
setting, and the paired per-fold differences (mean ± standard error) of today's setting against the previous
one. ``--write`` replaces the "## Booster length" section of BENCHMARKS.md. Exits 0 with a message when the
real file is absent.

    .venv/bin/python bench/booster_length.py --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks_md import publish
from model_quality import DEFAULT_DATA, features_and_labels, fit_and_score, load_real, outer_folds
from threadpoolctl import threadpool_limits

from segmentation.candidates import _hist_gradient_boosting, build_candidate
from segmentation.preprocessing import build_pipeline

SECTION = "## Booster length"
LONG = {"learning_rate": 0.02, "max_iter": 400}
VOTE_LONG = {"learning_rate": 0.04, "max_iter": 200}
SHORT = {"learning_rate": 0.08, "max_iter": 100}


def _booster(settings: dict[str, Any], seed: int) -> Any:
    return build_pipeline(_hist_gradient_boosting(seed, **settings), encoding="ordinal")


def _vote(settings: dict[str, Any], seed: int) -> Any:
    return build_candidate("hgb_rf_vote", seed).set_params(
        **{f"classifier__hgb__classifier__{key}": value for key, value in settings.items()}
    )


MODELS: dict[str, Callable[[int], Any]] = {
    "hgb 400 x 0.02": lambda seed: _booster(LONG, seed),
    "hgb 100 x 0.08": lambda seed: _booster(SHORT, seed),
    "vote with hgb 200 x 0.04": lambda seed: _vote(VOTE_LONG, seed),
    "vote with hgb 100 x 0.08": lambda seed: _vote(SHORT, seed),
}
BASELINES = {"hgb 100 x 0.08": "hgb 400 x 0.02", "vote with hgb 100 x 0.08": "vote with hgb 200 x 0.04"}


def _paired(new: np.ndarray, old: np.ndarray) -> str:
    diff = new - old
    return f"{diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0, help="folds and models, as in model_quality.py")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"{args.data} not found; nothing to measure")
        return 0
    started = time.perf_counter()
    frame = load_real(args.data)
    X, y = features_and_labels(frame)
    folds = outer_folds(X, y, splits=2, repeats=5, seed=args.seed)
    with threadpool_limits(1):
        results = {
            name: [fit_and_score(partial(build, args.seed), X, y, train, test) for train, test in folds]
            for name, build in MODELS.items()
        }

    def column(name: str, metric: str) -> np.ndarray:
        return np.array([r[metric] for r in results[name]])

    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()}: {len(X):,} labelled rows of the real file after cleaning, "
        f"{len(folds)} folds of RepeatedStratifiedKFold(2 x 5, random_state={args.seed}) and model seed "
        f'{args.seed}, the folds of the "Model quality" section, one thread.',
        "",
        "Command: `.venv/bin/python bench/booster_length.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`",
        "",
        "| model | accuracy | log loss | predict_proba rows/s | Δ accuracy (paired) | Δ log loss (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        base = BASELINES.get(name)
        acc, loss = column(name, "accuracy"), column(name, "log_loss")
        deltas = (_paired(acc, column(base, "accuracy")), _paired(loss, column(base, "log_loss"))) if base else ("", "")
        rate = np.mean(column(name, "predict_rows_per_s"))
        lines.append(f"| {name} | {acc.mean():.4f} | {loss.mean():.4f} | {rate:,.0f} | {deltas[0]} | {deltas[1]} |")
    lines += ["", f"Bench wall time: {time.perf_counter() - started:.0f} s.", ""]
    publish(SECTION, "\n".join(lines), write=args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
