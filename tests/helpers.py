"""Helpers shared by the test folders: synthetic labelled customers and one-line database queries."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.columns import ALLOWED_CATEGORIES, SEGMENTS

# The real Kaggle files live next to the project, never inside it; tests that read them skip when absent.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_TRAIN_CSV = SHARED_DATA / "customers_train.csv"
REAL_NEW_CSV = SHARED_DATA / "customers_new.csv"


def db_url() -> str:
    """The customer database of the running test (``fresh_db`` and the session fixtures name it)."""
    return os.environ.get("SEGMENTATION_DATABASE_URL", "")


def current_settings():
    """The settings of the running test, read from its environment (the tests are an edge, like the CLI)."""
    from segmentation.config import get_settings

    return get_settings()


def model_key() -> bytes:
    """The model signing key of the running test's settings."""
    from segmentation.signing import signing_key

    return signing_key(current_settings())


def require_file(path: Path) -> Path:
    """Return ``path``; skip the calling test (call it first) when the file is absent on this machine."""
    if not path.exists():
        pytest.skip(f"{path} is not present on this machine")
    return path


def make_labelled(n: int, seed: int = 0, *, gaps: float = 0.05) -> pd.DataFrame:
    """Synthetic clean, labelled customers whose attributes are correlated with the segment.

    ``gaps`` is the share of missing values planted in ever_married, graduated, profession, work_experience
    and family_size.
    """
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, n)
    professions = ALLOWED_CATEGORIES["profession"]
    preferred = np.array([professions[0], professions[5], professions[2], professions[7]])[codes]
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1, dtype="int64"),
            "gender": rng.choice(["Female", "Male"], n).astype(object),
            "ever_married": np.where(rng.random(n) < 0.2 + 0.2 * codes, "Yes", "No").astype(object),
            "graduated": np.where(rng.random(n) < 0.8 - 0.2 * codes, "Yes", "No").astype(object),
            "profession": np.where(rng.random(n) < 0.6, preferred, rng.choice(professions, n)).astype(object),
            "spending_score": np.where(
                rng.random(n) < 0.7, np.array(["Low", "Average", "High", "Low"])[codes], "Average"
            ).astype(object),
            "var_1": rng.choice(ALLOWED_CATEGORIES["var_1"], n).astype(object),
            "age": (22 + 10 * codes + rng.normal(0, 6, n)).round().clip(18, 89),
            "work_experience": rng.integers(0, 15, n).astype(float),
            "family_size": (1 + codes + rng.integers(0, 3, n)).astype(float),
            "segment": np.array(SEGMENTS)[codes].astype(object),
        }
    )
    for column in ("ever_married", "graduated", "profession", "work_experience", "family_size"):
        frame.loc[rng.random(n) < gaps, column] = None
    return frame


def make_xy(n: int, seed: int = 0, *, gaps: float = 0.05) -> tuple[pd.DataFrame, pd.Series]:
    """:func:`make_labelled` customers with their derived columns, and their segments: model input X, y."""
    from segmentation.features import derive_features

    frame = make_labelled(n, seed, gaps=gaps)
    return derive_features(frame), frame["segment"]


def query(sql: str, params: tuple = ()) -> list[tuple]:
    """All rows of ``sql`` on the customer database of the environment."""
    from segmentation.db import connect

    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def scalar(sql: str, params: tuple = ()) -> object:
    """The first column of the first row of ``sql``."""
    return query(sql, params)[0][0]


def execute(sql: str, params: tuple = ()) -> None:
    """Run one statement and commit."""
    from segmentation.db import connect

    with connect(db_url()) as conn, conn.cursor() as cur:
        cur.execute(sql, params)


def load_generated(rows: int, seed: int = 1, start_id: int = 1, labelled_share: float = 0.5) -> None:
    """Generate synthetic customers and load them as ``load-csv`` would."""
    from segmentation.loading import load_customers, to_raw_text
    from segmentation.synthetic import generate_customers

    frame = generate_customers(rows, labelled_share=labelled_share, seed=seed, start_id=start_id)
    load_customers(to_raw_text(frame), run_id="test-load", url=db_url())


def run_as(url: str, statement: str) -> list:
    """Run ``statement`` as the login of ``url`` (e.g. a least-privilege role) and roll back; its rows, if any."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.rollback()
        conn.close()
