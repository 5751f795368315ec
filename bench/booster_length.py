"""Booster length: the previous, longer HistGradientBoosting settings against today's 100 x 0.08.

Same folds as bench/model_quality.py (RepeatedStratifiedKFold 2x5, random_state 42) on the real labelled file,
one thread. The booster alone (previously 400 iterations x learning rate 0.02) and inside the ``hgb_rf_vote``
soft vote (previously 200 x 0.04). Prints accuracy, log loss and predict_proba rows/s per setting, and the
paired per-fold differences (mean ± standard error) of today's setting against the previous one.
``--write`` replaces the "## Booster length" section of BENCHMARKS.md. Exits 0 with a message when the real
file is absent.

    .venv/bin/python bench/booster_length.py --write
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks_md import write_section
from model_quality import DEFAULT_DATA, load_real, score
from sklearn.model_selection import RepeatedStratifiedKFold
from threadpoolctl import threadpool_limits

from segmentation.columns import MODEL_INPUT_COLUMNS, SEGMENT
from segmentation.features import build_pipeline
from segmentation.training import _hist_gradient_boosting, build_candidate

SECTION = "## Booster length"
LONG = {"learning_rate": 0.02, "max_iter": 400}
VOTE_LONG = {"learning_rate": 0.04, "max_iter": 200}
SHORT = {"learning_rate": 0.08, "max_iter": 100}


def _booster(settings: dict[str, Any]) -> Any:
    return build_pipeline(_hist_gradient_boosting(42, **settings), encoding="ordinal")


def _vote(settings: dict[str, Any]) -> Any:
    return build_candidate("hgb_rf_vote", 42).set_params(
        **{f"classifier__hgb__classifier__{key}": value for key, value in settings.items()}
    )


MODELS: dict[str, Callable[[], Any]] = {
    "hgb 400 x 0.02": lambda: _booster(LONG),
    "hgb 100 x 0.08": lambda: _booster(SHORT),
    "vote with hgb 200 x 0.04": lambda: _vote(VOTE_LONG),
    "vote with hgb 100 x 0.08": lambda: _vote(SHORT),
}
BASELINES = {"hgb 100 x 0.08": "hgb 400 x 0.02", "vote with hgb 100 x 0.08": "vote with hgb 200 x 0.04"}


def _paired(new: np.ndarray, old: np.ndarray) -> str:
    diff = new - old
    return f"{diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"{args.data} not found; nothing to measure")
        return 0
    started = time.perf_counter()
    frame = load_real(args.data)
    X, y = frame.loc[:, list(MODEL_INPUT_COLUMNS)], frame[SEGMENT].astype(str).to_numpy()
    folds = list(RepeatedStratifiedKFold(n_splits=2, n_repeats=5, random_state=42).split(X, y))
    results: dict[str, list[dict[str, float]]] = {name: [] for name in MODELS}
    with threadpool_limits(1):
        for train, test in folds:
            for name, build in MODELS.items():
                model = build()
                fit_started = time.perf_counter()
                model.fit(X.iloc[train], y[train])
                results[name].append(score(model, X.iloc[test], y[test], time.perf_counter() - fit_started))

    def column(name: str, metric: str) -> np.ndarray:
        return np.array([r[metric] for r in results[name]])

    lines = [
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()}: {len(X):,} labelled rows of the real file after cleaning, "
        f"{len(folds)} folds of RepeatedStratifiedKFold(2 x 5, random_state=42), one thread.",
        "",
        "Command: `.venv/bin/python bench/booster_length.py --write`",
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
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
