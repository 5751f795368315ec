"""Cheap ideas for a better served model, measured on the quality bench's outer folds against the equal vote.

Every row is a FIXED configuration fitted on each whole outer training part (as the refitted served model is)
and scored on the outer test part, paired per fold against ``hgb_rf_vote`` (the usual champion) and the
reference (seed GB). Not nested: a row that wins here would still have to win inside ``train_model``.

- ``stacking``: the vote's two members under a logistic-regression meta-model on their out-of-fold
  probabilities (``StackingClassifier``, 5 inner folds) instead of the equal average;
- ``vote, richer rf encoding``: the vote with its forest fed extra categorical columns (age bands, family-size
  bands, profession x married and profession x graduated crosses, one-hot);
- ``vote + spline lr``: a third equal member, a logistic regression on one-hot categories, the same crosses
  and B-splines of age, work experience and family size;
- interaction constraints on the vote's booster (``interaction_cst``): trees that combine at most two
  attributes, or one (an additive model). Monotone constraints are not measured: scikit-learn's
  HistGradientBoosting rejects them for more than two classes.

``--write`` replaces the "## Model ideas" section of BENCHMARKS.md. Exits 0 when the real file is absent.

    python bench/model_ideas.py --write
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from benchmarks_md import publish
from model_quality import (
    REFERENCE,
    add_fold_arguments,
    features_and_labels,
    fit_and_score,
    load_real,
    outer_folds,
)
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, StackingClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, SplineTransformer
from threadpoolctl import threadpool_limits

from segmentation.candidates import build_candidate
from segmentation.columns import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS
from segmentation.preprocessing import build_pipeline

SECTION = "## Model ideas"
CROSSES = ("age_band", "family_band", "profession_married", "profession_graduated")


def add_richer_columns(X: pd.DataFrame) -> pd.DataFrame:
    """Age and family-size bands and profession crosses, as categories ("missing" for gaps)."""
    out = X.copy()
    age = pd.cut(out["age"], [0, 25, 30, 35, 40, 45, 50, 60, 70, 200]).astype(str)
    out["age_band"] = age.where(out["age"].notna(), "missing")
    out["family_band"] = out["family_size"].clip(upper=6).astype("string").fillna("missing").astype(str)
    profession = out["profession"].astype("string").fillna("missing").astype(str)
    for other, name in (("ever_married", "profession_married"), ("graduated", "profession_graduated")):
        out[name] = profession + "|" + out[other].astype("string").fillna("missing").astype(str)
    for column in CATEGORICAL_COLUMNS:
        out[column] = out[column].astype("string").fillna("missing").astype(str)
    return out


def rich_one_hot(numeric: Pipeline | str = "passthrough") -> Pipeline:
    columns = ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_COLUMNS)),
            ("categories", OneHotEncoder(handle_unknown="ignore", min_frequency=20), [*CATEGORICAL_COLUMNS, *CROSSES]),
        ]
    )
    return make_pipeline(FunctionTransformer(add_richer_columns), columns)


def members(seed: int) -> dict[str, Pipeline]:
    vote = build_candidate("hgb_rf_vote", seed).named_steps["classifier"]
    return dict(vote.estimators)


def build_ideas(seed: int) -> dict[str, object]:
    def stacking() -> StackingClassifier:
        return StackingClassifier(
            list(members(seed).items()),
            final_estimator=LogisticRegression(max_iter=1000),
            stack_method="predict_proba",
            cv=5,
            n_jobs=1,
        )

    def richer_rf() -> Pipeline:
        rf = RandomForestClassifier(
            n_estimators=100, min_samples_leaf=10, max_features=0.3, n_jobs=1, random_state=seed
        )
        imputed = make_pipeline(SimpleImputer(strategy="median", add_indicator=True))
        return make_pipeline(rich_one_hot(imputed), rf)

    def constrained_vote(interactions: str) -> VotingClassifier:
        parts = members(seed)
        parts["hgb"].set_params(classifier__interaction_cst=interactions)
        return VotingClassifier(list(parts.items()), voting="soft")

    def spline_lr() -> Pipeline:
        numeric = make_pipeline(SimpleImputer(strategy="median"), SplineTransformer(n_knots=6, degree=3))
        return make_pipeline(rich_one_hot(numeric), LogisticRegression(C=0.3, max_iter=2000))

    return {
        REFERENCE: lambda: build_pipeline(GradientBoostingClassifier(random_state=seed)),
        "hgb_rf_vote": lambda: build_candidate("hgb_rf_vote", seed),
        "stacking (lr over the vote's members)": stacking,
        "vote, richer rf encoding": lambda: VotingClassifier(
            [("hgb", members(seed)["hgb"]), ("rf", richer_rf())], voting="soft"
        ),
        "vote + spline lr": lambda: VotingClassifier([*members(seed).items(), ("lr", spline_lr())], voting="soft"),
        "vote, hgb at most pairwise interactions": lambda: constrained_vote("pairwise"),
        "vote, hgb without interactions": lambda: constrained_vote("no_interactions"),
    }


def run_on_folds(
    builders: dict[str, Callable[[], object]],
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    fit: Callable[..., dict[str, float]] = fit_and_score,
) -> dict[str, list[dict[str, float]]]:
    """Every builder fitted and scored on every fold, one thread; scores per builder, in fold order."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in builders}
    with threadpool_limits(1):
        for number, (train_idx, test_idx) in enumerate(folds, start=1):
            for name, build in builders.items():
                results[name].append(fit(build, X, y, train_idx, test_idx))
            print(f"fold {number}/{len(folds)} done", file=sys.stderr, flush=True)
    return results


def fixed_intro(args: argparse.Namespace, rows: int, command: str) -> str:
    """The paragraph and command line that open a table of fixed configurations on the quality folds."""
    return (
        f"Fixed configurations on the quality bench's folds (RepeatedStratifiedKFold(n_splits={args.splits}, "
        f"n_repeats={args.repeats}, random_state={args.seed}), {rows:,} labelled rows), each fitted on the whole "
        "outer training part and scored on its test part; differences are paired per fold, mean ± standard error. "
        f"Not nested, so a small gain here is optimistic.\n\nCommand: `{command.strip()}`\n\n"
    )


def _mean_se(diff: pd.Series, digits: int) -> str:
    return f"{diff.mean():+.{digits}f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.{digits}f}"


def paired_table(results: dict[str, list[dict[str, float]]], speed_rows: int | None = None) -> str:
    """Markdown table: each model's fold means, and its paired differences to the vote and to the reference.

    With ``speed_rows``, a last column gives the folds' mean ``predict_rows_per_s``."""
    vote, ref = pd.DataFrame(results["hgb_rf_vote"]), pd.DataFrame(results[REFERENCE])
    speed = f" predict_proba rows/s ({speed_rows:,} rows) |" if speed_rows else ""
    lines = [
        "| model | accuracy | log loss | accuracy − vote (points) | log loss − vote | better than vote (acc/ll) "
        "| accuracy − reference (points) | log loss − reference | better than reference (acc/ll) | fit s |" + speed,
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if speed_rows else ""),
    ]
    for name, scores in results.items():
        t = pd.DataFrame(scores)
        da, dl = (t["accuracy"] - vote["accuracy"]) * 100, t["log_loss"] - vote["log_loss"]
        ra, rl = (t["accuracy"] - ref["accuracy"]) * 100, t["log_loss"] - ref["log_loss"]
        lines.append(
            f"| {name} | {t['accuracy'].mean():.4f} | {t['log_loss'].mean():.4f} "
            f"| {_mean_se(da, 2)} | {_mean_se(dl, 4)} | {int((da > 0).sum())}/{int((dl < 0).sum())} of {len(da)} "
            f"| {_mean_se(ra, 2)} | {_mean_se(rl, 4)} | {int((ra > 0).sum())}/{int((rl < 0).sum())} of {len(ra)} "
            f"| {t['fit_s'].mean():.2f} |" + (f" {t['predict_rows_per_s'].mean():,.0f} |" if speed_rows else "")
        )
    return "\n".join(lines)


def report_on_real_data(
    args: argparse.Namespace,
    argv: list[str] | None,
    bench: str,
    builders: dict[str, Callable[[], object]],
    fit: Callable[..., dict[str, float]] = fit_and_score,
    speed_rows: int | None = None,
) -> str:
    """Every builder on the real data's outer folds: the fixed introduction, the paired table, the wall time."""
    started = time.perf_counter()
    X, y = features_and_labels(load_real(args.data))
    folds = outer_folds(X, y, splits=args.splits, repeats=args.repeats, seed=args.seed)
    results = run_on_folds(builders, X, y, folds, fit=fit)
    command = f"python bench/{bench}.py " + " ".join(argv if argv is not None else sys.argv[1:])
    return (
        fixed_intro(args, len(X), command)
        + paired_table(results, speed_rows)
        + f"\n\nBench wall time: {time.perf_counter() - started:.0f} s."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_fold_arguments(parser)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"model_ideas: {args.data} is absent; skipping", file=sys.stderr)
        return 0
    text = f"{SECTION}\n\n" + report_on_real_data(args, argv, "model_ideas", build_ideas(args.seed)) + "\n"
    publish(SECTION, text, write=args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
