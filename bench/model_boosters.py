"""CatBoost and LightGBM, alone and in soft votes, on the quality bench's outer folds against the equal vote.

Every row is a FIXED configuration fitted on each whole outer training part and scored on its outer test
part, paired per fold against ``hgb_rf_vote`` (the usual champion) and the reference (seed GB), as in
bench/model_ideas.py. Not nested: a row that wins here would still have to win inside ``train_model``.

- ``catboost``: ``CatBoostClassifier`` (MultiClass) with native categorical features: the categorical columns
  as strings with "missing" for gaps, numeric gaps left as NaN; two fixed settings (depth 6 with CatBoost's
  default l2 3, and a shallower, more regularised depth 4 with l2 10), 500 iterations at learning rate 0.05;
- ``lightgbm``: ``LGBMClassifier`` on pandas category columns (the allowed categories, so train and test codes
  agree), 7 leaves, 300 trees at 0.04, at least 30 rows a leaf, L2 5, 80 % of the columns a tree;
- soft votes (equal weights): catboost d4 + the vote's forest, catboost d4 + the vote's HGB and forest,
  lightgbm + the vote's forest.

Each booster is a scikit-learn ``Pipeline`` (a ``FunctionTransformer`` that prepares its columns, then the
classifier), so it can stand in a ``VotingClassifier`` or the project's pipeline. One thread everywhere
(``threadpool_limits(1)``, ``thread_count=1``, ``n_jobs=1``). predict_proba rows/s are measured on 10,000 rows
(each fold's test part repeated). Needs ``catboost`` and ``lightgbm``, which the project does not install
(none of them earned its dependency: BENCHMARKS.md, "Boosters"); exits 2 without them. Prints only; exits 0
when the real file is absent.

    python -m venv /tmp/boosters && /tmp/boosters/bin/pip install -c constraints.txt -e . \
        catboost==1.2.10 lightgbm==4.7.0
    /tmp/boosters/bin/python bench/model_boosters.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from model_ideas import build_ideas, members, report_on_real_data
from model_quality import REFERENCE, add_fold_arguments, score
from sklearn.ensemble import VotingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from segmentation.columns import ALLOWED_CATEGORIES, MODEL_CATEGORICAL_COLUMNS, MODEL_NUMERIC_COLUMNS
from segmentation.metrics import predict_rows_per_second
from segmentation.preprocessing import MISSING_LABEL, as_float_with_nan

VOTE = "hgb_rf_vote"
SPEED_ROWS = 10_000
CATEGORY_DTYPES = {
    column: pd.CategoricalDtype(list(ALLOWED_CATEGORIES[column])) for column in MODEL_CATEGORICAL_COLUMNS
}


def _numeric(X: pd.DataFrame) -> pd.DataFrame:
    return as_float_with_nan(X.loc[:, list(MODEL_NUMERIC_COLUMNS)])


def catboost_columns(X: pd.DataFrame) -> pd.DataFrame:
    """The model's columns for CatBoost: numeric as float64 with NaN, categories as str with "missing"."""
    categories = X.loc[:, list(MODEL_CATEGORICAL_COLUMNS)].astype(object)
    categories = categories.where(categories.notna(), MISSING_LABEL).astype(str).astype(object)
    return pd.concat([_numeric(X), categories], axis=1)


def lightgbm_columns(X: pd.DataFrame) -> pd.DataFrame:
    """The model's columns for LightGBM: numeric as float64 with NaN, categories as pandas category dtype over
    the allowed values (missing and unknown values are NaN)."""
    categories = X.loc[:, list(MODEL_CATEGORICAL_COLUMNS)].astype(object)
    categories = categories.where(categories.notna(), None)
    categories = pd.DataFrame(
        {column: categories[column].astype(CATEGORY_DTYPES[column]) for column in categories.columns},
        index=X.index,
    )
    return pd.concat([_numeric(X), categories], axis=1)


def catboost_pipeline(seed: int, *, depth: int, l2_leaf_reg: float) -> Pipeline:
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(
        loss_function="MultiClass",
        iterations=500,
        learning_rate=0.05,
        depth=depth,
        l2_leaf_reg=l2_leaf_reg,
        # A tuple: CatBoost's get_params deep-copies, and sklearn's clone needs the very same object back.
        cat_features=tuple(MODEL_CATEGORICAL_COLUMNS),
        random_seed=seed,
        thread_count=1,
        verbose=False,
        allow_writing_files=False,
    )
    return Pipeline([("features", FunctionTransformer(catboost_columns)), ("classifier", model)])


def lightgbm_pipeline(seed: int) -> Pipeline:
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(
        num_leaves=7,
        learning_rate=0.04,
        n_estimators=300,
        min_child_samples=30,
        reg_lambda=5.0,
        colsample_bytree=0.8,
        random_state=seed,
        n_jobs=1,
        verbose=-1,
    )
    return Pipeline([("features", FunctionTransformer(lightgbm_columns)), ("classifier", model)])


def build_boosters(seed: int) -> dict[str, Callable[[], object]]:
    ideas = build_ideas(seed)

    def cb_d6() -> Pipeline:
        return catboost_pipeline(seed, depth=6, l2_leaf_reg=3.0)

    def cb_d4() -> Pipeline:
        return catboost_pipeline(seed, depth=4, l2_leaf_reg=10.0)

    def vote(*extra: tuple[str, Pipeline], keep: tuple[str, ...]) -> VotingClassifier:
        kept = [(name, member) for name, member in members(seed).items() if name in keep]
        return VotingClassifier([*extra, *kept], voting="soft", n_jobs=1)

    return {
        REFERENCE: ideas[REFERENCE],
        VOTE: ideas[VOTE],
        "catboost d6 l2 3": cb_d6,
        "catboost d4 l2 10": cb_d4,
        "lightgbm 7 leaves": lambda: lightgbm_pipeline(seed),
        "vote catboost d4 + rf": lambda: vote(("catboost", cb_d4()), keep=("rf",)),
        "vote catboost d4 + hgb + rf": lambda: vote(("catboost", cb_d4()), keep=("hgb", "rf")),
        "vote lightgbm + rf": lambda: vote(("lightgbm", lightgbm_pipeline(seed)), keep=("rf",)),
    }


def fit_and_measure(build, X: pd.DataFrame, y: np.ndarray, train_idx, test_idx) -> dict[str, float]:
    """model_quality's fit and score, with predict_proba rows/s on SPEED_ROWS rows."""
    model = build()
    started = time.perf_counter()
    model.fit(X.iloc[train_idx], y[train_idx])
    fit_s = time.perf_counter() - started
    X_test = X.iloc[test_idx]
    scores = score(model, X_test, y[test_idx], fit_s)
    batch = X_test.iloc[np.resize(np.arange(len(X_test)), SPEED_ROWS)]
    scores["predict_rows_per_s"] = predict_rows_per_second(model, batch, min_rows=SPEED_ROWS)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_fold_arguments(parser)
    args = parser.parse_args(argv)
    absent = [name for name in ("catboost", "lightgbm") if importlib.util.find_spec(name) is None]
    if absent:
        print(
            f"model_boosters: needs {' and '.join(absent)}, which the project does not install "
            "(measured with catboost==1.2.10 lightgbm==4.7.0 beside constraints.txt)",
            file=sys.stderr,
        )
        return 2
    if not args.data.exists():
        print(f"model_boosters: {args.data} is absent; skipping", file=sys.stderr)
        return 0
    print(report_on_real_data(args, argv, "model_boosters", build_boosters(args.seed), fit_and_measure, SPEED_ROWS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
