"""Prediction with a model, writing nothing: segments and probabilities of feature rows (``predict_frame``, also
used by the batch scoring of ``segmentation.scoring``), and one customer scored from their raw attributes
(``score_customer``: for ``segmentation predict``, the what-if API and the what-if page)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from segmentation import explain, registry, signing
from segmentation.cleaning import REASONS, validate
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, MODEL_INPUT_COLUMNS, PROBABILITY_COLUMNS, SEGMENTS
from segmentation.config import Settings
from segmentation.db import connect
from segmentation.errors import DataError, ModelError
from segmentation.features import derive_features

log = logging.getLogger(__name__)

# What ``segmentation predict`` prints, in this order (the what-if also gives the values it scored).
CLI_FIELDS = ("segment", "probabilities", "model_version", "description", "reasons", "imputed")


def predict_frame(model: Any, features: pd.DataFrame) -> pd.DataFrame:
    """Segment and the four probabilities per customer, mapped from the model's classes by label."""
    missing = [c for c in MODEL_INPUT_COLUMNS if c not in features.columns]
    if missing:
        raise ModelError(f"the data lacks columns the model expects: {missing}")
    classes = [str(c) for c in getattr(model, "classes_", [])]
    if sorted(classes) != sorted(SEGMENTS):
        raise ModelError(f"model classes {classes} are not the segments {list(SEGMENTS)}")
    proba = model.predict_proba(features.loc[:, list(MODEL_INPUT_COLUMNS)])
    ordered = proba[:, [classes.index(s) for s in SEGMENTS]]
    out = pd.DataFrame(ordered, columns=list(PROBABILITY_COLUMNS), index=features.index)
    out.insert(0, "segment", np.asarray(SEGMENTS)[ordered.argmax(axis=1)])
    out.insert(0, CUSTOMER_ID, features[CUSTOMER_ID].to_numpy())
    return out


@dataclass(frozen=True)
class Scorer:
    """A model version ready to score one customer: its verified pipeline, its segments' profiles and the
    background rows its reasons are measured against."""

    version: int
    model: Any
    profiles: dict[str, Any]
    background: pd.DataFrame


class InvalidCustomer(DataError):
    """One customer's attributes break the pipeline's rules (``segmentation.cleaning``).

    ``rules`` are the broken rules in the order validation gives them; ``errors`` the same rules by field,
    each with its message. The text names every rule and what it asks for, never the submitted values.
    """

    def __init__(self, rules: list[str]) -> None:
        self.rules = list(rules)
        self.errors: dict[str, list[dict[str, str]]] = {}
        for rule in self.rules:
            field = max((c for c in ATTRIBUTE_COLUMNS if rule.startswith(c + "_")), key=len, default="customer")
            self.errors.setdefault(field, []).append({"rule": rule, "message": REASONS.get(rule, rule)})
        super().__init__("invalid customer: " + "; ".join(f"{r} ({REASONS.get(r, r)})" for r in self.rules))


def check_values(values: Mapping[str, Any]) -> pd.DataFrame:
    """One customer's raw attributes (any may be missing or empty) validated with the pipeline's rules: the
    clean one-row frame, or InvalidCustomer naming every broken rule."""
    raw = pd.DataFrame([{CUSTOMER_ID: "1", **{c: values.get(c) for c in ATTRIBUTE_COLUMNS}}])
    checked = validate(raw)
    if not checked.rejects.empty:
        raise InvalidCustomer(checked.rejects.iloc[0]["reasons"])
    return checked.clean


def score_customer(values: Mapping[str, Any], load: Callable[[], Scorer]) -> dict[str, Any]:
    """Score one customer from their raw attributes: segment, probabilities, the segment's description, the
    attributes that were empty and imputed by the model, the top reasons for the segment (``explain``) and the
    values scored.

    The values are validated first (InvalidCustomer); ``load`` gives the model version to score with and is
    called only for valid values, so that bad input is reported before a database or model is touched.
    """
    clean = check_values(values).astype({"age": "float64"})
    scorer = load()
    imputed = [c for c in ATTRIBUTE_COLUMNS if pd.isna(clean.iloc[0][c])]
    features = derive_features(clean)
    with one_thread():
        scored = predict_frame(scorer.model, features).iloc[0]
        reasons = explain.explain_frame(scorer.model, features, scorer.background)[0]
    segment = str(scored["segment"])
    return {
        "segment": segment,
        "probabilities": {s: round(float(scored[f"p_{s.lower()}"]), 4) for s in SEGMENTS},
        "model_version": scorer.version,
        "description": (scorer.profiles.get(segment) or {}).get("description"),
        "imputed": imputed,
        "reasons": reasons,
        "values": {c: _plain(clean.iloc[0][c]) for c in ATTRIBUTE_COLUMNS},
    }


def stored_profiles(cur: Any, version: int) -> dict[str, Any]:
    """The segment profiles stored with a model version ({} for an unknown version or none stored)."""
    cur.execute("SELECT profiles FROM segmentation.model_versions WHERE version = %s", (version,))
    row = cur.fetchone()
    return (row[0] or {}) if row else {}


def predict_one(values: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """``segmentation predict``: one customer scored with the champion (``score_customer``), its reasons measured
    against the champion's whole stored background. ``settings`` carry the resolved customer database URL; the
    database and the signing key are used only once the values are valid."""

    def champion() -> Scorer:
        with connect(settings.database_url or "", settings) as conn, conn.cursor() as cur:
            current = registry.champion(cur)
            if current is None:
                raise ModelError("no champion model yet; run `segmentation train` first")
            key = signing.signing_key(settings)
            model = registry.load_model(cur, current.version, settings.model_cache_dir, key=key)
            profiles = stored_profiles(cur, current.version)
            return Scorer(current.version, model, profiles, explain.background_frame(cur, current.version))

    result = score_customer(values, champion)
    return {k: result[k] for k in CLI_FIELDS}


_controller: list[Any] = []
_controller_lock = threading.Lock()


def one_thread() -> Any:
    """A context limiting native thread pools (OpenMP, BLAS) to one thread: for one row, and for the coalition
    rows of its reasons, more threads only add start-up and contention on a shared machine."""
    from threadpoolctl import ThreadpoolController

    with _controller_lock:
        if not _controller:
            _controller.append(ThreadpoolController())  # inspecting the loaded libraries once, not per call
    return _controller[0].limit(limits=1)


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value
