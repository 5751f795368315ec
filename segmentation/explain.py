"""Why a customer is in its segment: exact Shapley values of the nine input attributes.

For one customer ``x``, the value of a set ``S`` of attributes is the model's mean probability of the assigned
segment over background customers ``b`` whose attributes in ``S`` are replaced by ``x``'s (interventional
Shapley values). With nine attributes there are 2^9 = 512 sets, so every set is evaluated exactly: no
sampling, no assumption about the model family (it works the same for the voting ensemble). The derived
columns are recomputed from the mixed attributes, so they follow the attributes they are built from. The
effects of all nine attributes sum to the customer's probability minus the background's mean probability.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmentation import registry
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, MODEL_INPUT_COLUMNS, NUMERIC_COLUMNS, SEGMENTS
from segmentation.errors import DatabaseError, DataError, ModelError, NotFoundError
from segmentation.features import derive_features
from segmentation.jsonsafe import json_safe

ATTRIBUTES: tuple[str, ...] = ATTRIBUTE_COLUMNS
# Background customers the effects are measured against (stored with each model version at training).
BACKGROUND_ROWS = 50


def _masks(n: int) -> np.ndarray:
    """Every subset of ``n`` attributes as a boolean row (2^n x n), subset number k = sum of 2^j over j in it."""
    return np.array(list(product([False, True], repeat=n)), dtype=bool)[:, ::-1]


def _shapley_weights(n: int) -> np.ndarray:
    """Weight of a subset of size s in a Shapley value: s! (n - s - 1)! / n!, indexed by s."""
    return np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)])


def _attributes(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ATTRIBUTES if c not in frame.columns]
    if missing:
        raise DataError(f"explanations need the attribute columns {list(ATTRIBUTES)}; missing {missing}")
    out = frame.loc[:, list(ATTRIBUTES)].astype(object)
    return out.where(out.notna(), None)


def _model_input(attributes: pd.DataFrame) -> pd.DataFrame:
    """Attributes typed as the model expects, with the derived columns."""
    typed = attributes.copy()
    for column in NUMERIC_COLUMNS:
        typed[column] = pd.to_numeric(typed[column], errors="coerce").astype("float64")
    return derive_features(typed).loc[:, list(MODEL_INPUT_COLUMNS)]


def _class_index(model: Any) -> list[int]:
    classes = [str(c) for c in getattr(model, "classes_", [])]
    if sorted(classes) != sorted(SEGMENTS):
        raise ModelError(f"model classes {classes} are not the segments {list(SEGMENTS)}")
    return [classes.index(s) for s in SEGMENTS]


def coalition_values(model: Any, row: pd.Series, background: pd.DataFrame) -> np.ndarray:
    """Mean probability of each segment (SEGMENTS order) for every subset of attributes taken from ``row``
    and the rest from each background row: shape (2^9, 4). Identical mixed rows are predicted once."""
    masks = _masks(len(ATTRIBUTES))
    n_sets, n_bg = len(masks), len(background)
    bg = background.to_numpy(dtype=object)
    x = np.asarray([row[c] for c in ATTRIBUTES], dtype=object)
    take = np.repeat(masks, n_bg, axis=0)
    mixed = np.where(take, x[None, :], np.tile(bg, (n_sets, 1)))
    frame = pd.DataFrame(mixed, columns=list(ATTRIBUTES))
    codes, _ = pd.factorize(pd.util.hash_pandas_object(frame.astype(str), index=False))
    first = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()
    proba = model.predict_proba(_model_input(frame.iloc[first].reset_index(drop=True)))[:, _class_index(model)]
    return proba[codes].reshape(n_sets, n_bg, len(SEGMENTS)).mean(axis=1)


def shapley_values(model: Any, row: pd.Series, background: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Exact Shapley values (9 attributes x 4 segments) of one row, and the background's mean probabilities."""
    n = len(ATTRIBUTES)
    values = coalition_values(model, row, _attributes(background))
    masks = _masks(n)
    sizes = masks.sum(axis=1)
    weights = _shapley_weights(n)
    phi = np.zeros((n, len(SEGMENTS)))
    for i in range(n):
        without = np.flatnonzero(~masks[:, i])
        phi[i] = (weights[sizes[without]][:, None] * (values[without + (1 << i)] - values[without])).sum(axis=0)
    return phi, values[0]


def explain_frame(
    model: Any, features: pd.DataFrame, background: pd.DataFrame | None = None, *, top: int = 5
) -> list[list[dict[str, Any]]]:
    """Per row, the ``top`` reasons for the row's assigned segment (the most probable one): attribute, the
    row's value, and its Shapley effect on that segment's probability, largest first (an attribute that
    lowers it appears only when fewer than ``top`` raise it). ``background`` defaults to the rows themselves.
    """
    attributes = _attributes(features)
    background = _attributes(background if background is not None else features)
    if background.empty:
        raise DataError("explanations need at least one background row")
    proba = model.predict_proba(_model_input(attributes))[:, _class_index(model)]
    out = []
    for position in range(len(attributes)):
        row = attributes.iloc[position]
        phi, _ = shapley_values(model, row, background)
        assigned = int(np.argmax(proba[position]))
        effects = phi[:, assigned]
        order = sorted(range(len(ATTRIBUTES)), key=lambda i: (-effects[i], ATTRIBUTES[i]))
        out.append(
            [
                {"attribute": ATTRIBUTES[i], "value": json_safe(row[ATTRIBUTES[i]]), "effect": float(effects[i])}
                for i in order[:top]
            ]
        )
    return out


_CUSTOMER_SQL = f"""
SELECT s.segment, s.model_version, {", ".join(f"f.{c}" for c in ATTRIBUTES)}
FROM segmentation.customer_segments AS s
JOIN segmentation.customer_features AS f USING (customer_id)
WHERE s.customer_id = %s
"""


def _check_schema(cur: Any) -> None:
    cur.execute("SELECT to_regclass('segmentation.model_versions'), to_regclass('segmentation.customer_segments')")
    if None in cur.fetchone():
        raise DatabaseError("the customer database has no segmentation schema; run `segmentation init-db` first")


def _why_missing(cur: Any, customer_id: int) -> str:
    """Why a customer has no scored, clean feature row: unknown, quarantined, or not scored yet."""
    cur.execute("SELECT 1 FROM segmentation.customers WHERE customer_id = %s", (customer_id,))
    if cur.fetchone() is None:
        return f"customer {customer_id} is unknown: no such customer_id in segmentation.customers"
    cur.execute(
        """SELECT reasons FROM segmentation.customer_rejects AS r
           JOIN segmentation.customers AS c USING (customer_id)
           WHERE r.customer_id = %s AND r.source_updated_at = c.updated_at""",
        (customer_id,),
    )
    rejected = cur.fetchone()
    if rejected is not None:
        return f"customer {customer_id} is quarantined ({', '.join(rejected[0])}) and has no segment"
    return f"customer {customer_id} has not been scored yet; run `segmentation run` (or clean, features, score)"


def background_frame(cur: Any, version: int) -> pd.DataFrame:
    """The background rows stored with ``version``, else a fixed sample of today's customer features."""
    stored = registry.explain_background(cur, version)
    if stored:
        return pd.DataFrame(stored, columns=list(ATTRIBUTES))
    cur.execute(
        f"""SELECT {", ".join(ATTRIBUTES)} FROM segmentation.customer_features
            ORDER BY md5(customer_id::text) LIMIT %s""",
        (BACKGROUND_ROWS,),
    )
    return pd.DataFrame(cur.fetchall(), columns=list(ATTRIBUTES))


def explain_customer(
    cur: Any,
    customer_id: int,
    *,
    cache_dir: Path | None = None,
    key: bytes | None = None,
    load_model: Callable[[Any, int], Any] | None = None,
) -> dict[str, Any]:
    """The segment, probabilities, model version, top reasons and segment description of one scored customer,
    explained with the model version that scored it.

    ``load_model(cur, version)`` replaces ``registry.load_model`` with the signing ``key`` (for a caller that
    keeps verified models in memory, such as the web app). NotFoundError for an unknown, quarantined or not yet
    scored customer; ModelError without a champion.
    """
    _check_schema(cur)
    if registry.champion(cur) is None:
        raise ModelError("no champion model yet; run `segmentation train` first")
    cur.execute(_CUSTOMER_SQL, (customer_id,))
    found = cur.fetchone()
    if found is None:
        raise NotFoundError(_why_missing(cur, customer_id))
    version = int(found[1])
    attributes = pd.DataFrame([found[2:]], columns=list(ATTRIBUTES))
    if load_model is not None:
        model = load_model(cur, version)
    else:
        model = registry.load_model(cur, version, cache_dir, key=key)
    proba = model.predict_proba(_model_input(_attributes(attributes)))[:, _class_index(model)][0]
    segment = SEGMENTS[int(np.argmax(proba))]
    reasons = explain_frame(model, attributes, background_frame(cur, version))[0]
    cur.execute("SELECT profiles FROM segmentation.model_versions WHERE version = %s", (version,))
    profiles = cur.fetchone()[0] or {}
    return {
        CUSTOMER_ID: customer_id,
        "segment": segment,
        "probabilities": {s: round(float(p), 4) for s, p in zip(SEGMENTS, proba, strict=True)},
        "model_version": version,
        "reasons": reasons,
        "description": profiles.get(segment, {}).get("description"),
    }
