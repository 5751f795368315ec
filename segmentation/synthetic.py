"""Synthetic customers that look like the real ones, for demos, tests and benchmarks.

The generator draws realistic, learnable customers from small tables of aggregate parameters measured once on
the real training file (no rows of the real data are stored here).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from segmentation.columns import ALLOWED_CATEGORIES, CUSTOMER_ID, SEGMENT, SEGMENTS
from segmentation.errors import DataError

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Synthetic customers
#
# Aggregate parameters measured on the real labelled file (6,454 rows). Probabilities are per
# segment in the order A, B, C, D and are measured on the non-missing values; the generator draws
# a latent segment first, then every attribute conditionally on it.
# --------------------------------------------------------------------------------------------------

_SEGMENT_SHARES = (0.244, 0.230, 0.244, 0.281)

# Category labels in the order of the table columns below.
_GENDERS = ALLOWED_CATEGORIES["gender"]
_NO_YES = ALLOWED_CATEGORIES["ever_married"]
_PROFESSIONS = ALLOWED_CATEGORIES["profession"]
_SPENDING_SCORES = ALLOWED_CATEGORIES["spending_score"]
_VAR_1_VALUES = ALLOWED_CATEGORIES["var_1"]

# Age bands [18,20), [20,25), ..., [85,90); integer ages are uniform inside a band.
_AGE_EDGES = np.array([18, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90])
_AGE_BAND_PROBS = (  # segment x band
    (0.005, 0.004, 0.146, 0.122, 0.189, 0.152, 0.080, 0.073, 0.046, 0.028, 0.040, 0.029, 0.026, 0.030, 0.029),
    (0.001, 0.009, 0.076, 0.064, 0.163, 0.137, 0.127, 0.110, 0.085, 0.065, 0.055, 0.041, 0.023, 0.030, 0.013),
    (0.005, 0.015, 0.075, 0.063, 0.128, 0.092, 0.165, 0.136, 0.102, 0.066, 0.054, 0.046, 0.018, 0.015, 0.019),
    (0.106, 0.201, 0.216, 0.173, 0.083, 0.060, 0.033, 0.024, 0.016, 0.012, 0.020, 0.017, 0.013, 0.015, 0.013),
)
# Age groups used to condition marriage, graduation and profession: 18-29, 30-49, 50-89.
_AGE_GROUP_EDGES = np.array([30, 50])

_P_MARRIED = ((0.322, 0.509, 0.865), (0.262, 0.691, 0.909), (0.136, 0.766, 0.959), (0.091, 0.335, 0.859))
_P_GRADUATED = ((0.483, 0.684, 0.610), (0.550, 0.761, 0.723), (0.446, 0.832, 0.878), (0.203, 0.553, 0.457))
_P_MALE = (0.542, 0.545, 0.530, 0.585)

# Profession | segment, age group, in the order of _PROFESSIONS.
_PROFESSION_PROBS = (
    (
        (0.266, 0.152, 0.148, 0.164, 0.045, 0.127, 0.049, 0.000, 0.049),
        (0.353, 0.124, 0.147, 0.203, 0.052, 0.059, 0.038, 0.002, 0.021),
        (0.221, 0.043, 0.103, 0.180, 0.084, 0.006, 0.017, 0.326, 0.019),
    ),
    (
        (0.258, 0.148, 0.070, 0.125, 0.000, 0.281, 0.047, 0.000, 0.070),
        (0.503, 0.077, 0.100, 0.112, 0.094, 0.058, 0.037, 0.003, 0.015),
        (0.351, 0.049, 0.107, 0.110, 0.136, 0.010, 0.018, 0.214, 0.005),
    ),
    (
        (0.154, 0.174, 0.067, 0.087, 0.013, 0.349, 0.034, 0.007, 0.114),
        (0.612, 0.076, 0.049, 0.076, 0.062, 0.093, 0.020, 0.001, 0.010),
        (0.551, 0.040, 0.029, 0.070, 0.137, 0.004, 0.007, 0.153, 0.008),
    ),
    (
        (0.038, 0.092, 0.044, 0.061, 0.022, 0.655, 0.035, 0.001, 0.052),
        (0.087, 0.126, 0.126, 0.155, 0.061, 0.254, 0.061, 0.003, 0.127),
        (0.101, 0.040, 0.070, 0.097, 0.137, 0.044, 0.004, 0.427, 0.079),
    ),
)

# Spending score (Low, Average, High) of married customers; every unmarried customer is Low.
_SPENDING_MARRIED_PROBS = (
    (0.487, 0.294, 0.218),
    (0.285, 0.426, 0.289),
    (0.165, 0.580, 0.255),
    (0.583, 0.209, 0.207),
)
_VAR_1_PROBS = (  # Cat_1 .. Cat_7
    (0.017, 0.044, 0.108, 0.172, 0.010, 0.620, 0.029),
    (0.014, 0.059, 0.103, 0.115, 0.011, 0.674, 0.024),
    (0.015, 0.056, 0.080, 0.062, 0.010, 0.754, 0.024),
    (0.022, 0.060, 0.115, 0.193, 0.013, 0.570, 0.027),
)
_FAMILY_SIZE_PROBS = (  # sizes 1 .. 9
    (0.298, 0.329, 0.172, 0.122, 0.043, 0.019, 0.012, 0.003, 0.004),
    (0.201, 0.346, 0.176, 0.172, 0.076, 0.019, 0.008, 0.002, 0.001),
    (0.071, 0.396, 0.209, 0.202, 0.080, 0.021, 0.006, 0.008, 0.005),
    (0.184, 0.180, 0.214, 0.220, 0.117, 0.045, 0.020, 0.011, 0.009),
)
# Work experience 0 .. 14 years (nearly the same in every segment; most mass at 0/1 and 8/9).
_WORK_EXPERIENCE_PROBS = (
    (0.322, 0.323, 0.038, 0.035, 0.035, 0.026, 0.027, 0.029, 0.065, 0.067, 0.007, 0.007, 0.006, 0.007, 0.006),
)
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
# Work experience never exceeds age minus this many years.
_MIN_AGE_AT_WORK_START = 10

# Share of missing values per column (missing completely at random).
_MISSING_RATES: dict[str, float] = {
    "gender": 0.0,
    "ever_married": 0.0175,
    "age": 0.0,
    "graduated": 0.0093,
    "profession": 0.0147,
    "work_experience": 0.1037,
    "spending_score": 0.0,
    "family_size": 0.0403,
    "var_1": 0.0104,
}


def _table(probs: tuple) -> np.ndarray:
    """Nested probability tuples -> float array whose last axis sums to 1."""
    array = np.asarray(probs, dtype=np.float64)
    return array / array.sum(axis=-1, keepdims=True)


def _draw_codes(rng: np.random.Generator, groups: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One category code per row, drawn from the row ``probs[group]`` (2-D table, rows sum to 1)."""
    u = rng.random(groups.size)
    cdf = np.cumsum(probs, axis=1)
    codes = np.zeros(groups.size, dtype=np.int64)
    for group in range(cdf.shape[0]):
        mask = groups == group
        codes[mask] = np.searchsorted(cdf[group], u[mask], side="right")
    return np.minimum(codes, probs.shape[1] - 1)


def _labels(values: tuple[str, ...], codes: np.ndarray, missing: np.ndarray) -> pd.Series:
    """Category codes -> object Series of str, None where ``missing``."""
    array = np.asarray(values, dtype=object)[codes]
    array[missing] = None
    return pd.Series(array, dtype=object)


def _validate_generator_args(n_rows: int, labelled_share: float, start_id: int) -> None:
    """Raise DataError for a row count, labelled share or first id outside what is allowed."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 0:
        raise DataError(f"n_rows={n_rows!r} is not allowed; expected an integer >= 0")
    if (
        isinstance(labelled_share, bool)
        or not isinstance(labelled_share, int | float | np.integer | np.floating)
        or not 0.0 <= labelled_share <= 1.0
    ):
        raise DataError(f"labelled_share={labelled_share!r} is not allowed; expected a number in 0..1")
    if isinstance(start_id, bool) or not isinstance(start_id, int | np.integer):
        raise DataError(f"start_id={start_id!r} is not allowed; expected an integer")
    if not _INT64_MIN <= start_id <= _INT64_MAX - n_rows:
        raise DataError(f"start_id={start_id!r} is not allowed; ids must fit in 64-bit integers")


def generate_customers(
    n_rows: int,
    *,
    labelled_share: float = 0.3,
    seed: int = 0,
    start_id: int = 1,
) -> pd.DataFrame:
    """Synthetic customers resembling the real data; ``segment`` is set for a random ``labelled_share``."""
    _validate_generator_args(n_rows, labelled_share, start_id)
    n = int(n_rows)
    rng = np.random.default_rng(seed)

    segment = _draw_codes(rng, np.zeros(n, dtype=np.int64), _table((_SEGMENT_SHARES,)))
    band = _draw_codes(rng, segment, _table(_AGE_BAND_PROBS))
    low, high = _AGE_EDGES[band], _AGE_EDGES[band + 1]
    age = low + np.floor(rng.random(n) * (high - low)).astype(np.int64)
    age_group = np.searchsorted(_AGE_GROUP_EDGES, age, side="right")
    segment_age = segment * (len(_AGE_GROUP_EDGES) + 1) + age_group

    male = rng.random(n) < np.asarray(_P_MALE)[segment]
    married = rng.random(n) < np.asarray(_P_MARRIED).ravel()[segment_age]
    graduated = rng.random(n) < np.asarray(_P_GRADUATED).ravel()[segment_age]
    profession = _draw_codes(rng, segment_age, _table(_PROFESSION_PROBS).reshape(-1, len(_PROFESSIONS)))
    spending = np.where(married, _draw_codes(rng, segment, _table(_SPENDING_MARRIED_PROBS)), 0)
    var_1 = _draw_codes(rng, segment, _table(_VAR_1_PROBS))
    family_size = _draw_codes(rng, segment, _table(_FAMILY_SIZE_PROBS)) + 1.0

    work = _draw_codes(rng, np.zeros(n, dtype=np.int64), _table(_WORK_EXPERIENCE_PROBS))
    max_work = age - _MIN_AGE_AT_WORK_START
    redrawn = np.floor(rng.random(n) * (max_work + 1)).astype(np.int64)
    work_experience = np.where(work > max_work, redrawn, work).astype(np.float64)

    missing = {col: rng.random(n) < rate for col, rate in _MISSING_RATES.items()}
    work_experience[missing["work_experience"]] = np.nan
    family_size[missing["family_size"]] = np.nan

    labelled = np.zeros(n, dtype=bool)
    labelled[rng.permutation(n)[: int(np.rint(labelled_share * n))]] = True

    columns = {
        CUSTOMER_ID: pd.Series(np.arange(start_id, start_id + n, dtype=np.int64)),
        "gender": _labels(_GENDERS, male.astype(np.int64), missing["gender"]),
        "ever_married": _labels(_NO_YES, married.astype(np.int64), missing["ever_married"]),
        "age": pd.Series(pd.arrays.IntegerArray(age.astype(np.int64), missing["age"])),
        "graduated": _labels(_NO_YES, graduated.astype(np.int64), missing["graduated"]),
        "profession": _labels(_PROFESSIONS, profession, missing["profession"]),
        "work_experience": pd.Series(work_experience),
        "spending_score": _labels(_SPENDING_SCORES, spending, missing["spending_score"]),
        "family_size": pd.Series(family_size),
        "var_1": _labels(_VAR_1_VALUES, var_1, missing["var_1"]),
        SEGMENT: _labels(SEGMENTS, segment, ~labelled),
    }
    logger.debug("generated %d synthetic customer(s), %d labelled, seed=%s", n, labelled.sum(), seed)
    return pd.DataFrame(columns)
