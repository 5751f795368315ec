"""The champion model for the what-if form, verified once and cached per process by version and sha256, with the
background rows its reasons are measured against."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from segmentation import explain, registry
from segmentation.cleaning import REASONS, validate
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID, SEGMENTS
from segmentation.errors import ModelError
from segmentation.features import derive_features
from segmentation.scoring import predict_frame
from segmentation.ui import queries

log = logging.getLogger(__name__)

# The what-if's reasons use the first rows of the version's stored explanation background (itself a random
# sample): exact Shapley values cost one prediction per coalition and background row, and 10 rows keep the
# what-if well under 100 ms (BENCHMARKS.md, "Segmentation UI").
WHAT_IF_BACKGROUND_ROWS = 10


@dataclass(frozen=True)
class CachedChampion:
    """A verified champion pipeline, the profiles of its segments and its explanation background."""

    version: int
    sha256: str
    model: Any
    profiles: dict[str, Any]
    background: pd.DataFrame


_lock = threading.Lock()
_cache: dict[tuple[int, str], CachedChampion] = {}


def current(cur: Any, cache_dir: Path | None = None, *, key: bytes | None = None) -> CachedChampion:
    """The champion, loaded (and its sha256 checked) only when its version or sha256 is new to this process."""
    version = queries.champion_key(cur)
    if version is None:
        raise ModelError("no champion model yet; run the segmentation_retrain DAG or `segmentation train`")
    cached = _cache.get(version)
    if cached is not None:
        return cached
    with _lock:
        cached = _cache.get(version)
        if cached is None:
            model = registry.load_model(cur, version[0], cache_dir, key=key)
            background = explain.background_frame(cur, version[0]).head(WHAT_IF_BACKGROUND_ROWS)
            cached = CachedChampion(version[0], version[1], model, queries.profiles(cur, version[0]), background)
            _cache.clear()  # only the current champion is kept
            _cache[version] = cached
            log.info("champion v%d (sha256 %s) loaded for the what-if form", version[0], version[1][:12])
    return cached


_controller: list[Any] = []


def one_thread() -> Any:
    """A context limiting native thread pools (OpenMP, BLAS) to one thread: for one row, and for the coalition
    rows of its reasons, more threads only add start-up and contention on a shared machine."""
    from threadpoolctl import ThreadpoolController

    if not _controller:
        _controller.append(ThreadpoolController())  # inspecting the loaded libraries once, not per request
    return _controller[0].limit(limits=1)


def clear() -> None:
    """Forget the cached champion (tests)."""
    with _lock:
        _cache.clear()


def check(values: dict[str, Any]) -> tuple[pd.DataFrame | None, dict[str, list[dict[str, str]]]]:
    """Validate one customer's raw attributes with the pipeline's rules (``segmentation.cleaning``).

    Returns the clean one-row frame, or None and the rules each attribute breaks, by field.
    """
    raw = pd.DataFrame([{CUSTOMER_ID: "1", **{c: values.get(c) for c in ATTRIBUTE_COLUMNS}}])
    checked = validate(raw)
    if checked.rejects.empty:
        return checked.clean, {}
    by_field: dict[str, list[dict[str, str]]] = {}
    for rule in checked.rejects.iloc[0]["reasons"]:
        field = max((c for c in ATTRIBUTE_COLUMNS if rule.startswith(c + "_")), key=len, default="customer")
        by_field.setdefault(field, []).append({"rule": rule, "message": REASONS.get(rule, rule)})
    return None, by_field


def score(champion: CachedChampion, clean: pd.DataFrame) -> dict[str, Any]:
    """Score one validated customer: segment, probabilities, description, imputed attributes and reasons."""
    clean = clean.astype({"age": "float64"})
    imputed = [c for c in ATTRIBUTE_COLUMNS if pd.isna(clean.iloc[0][c])]
    features = derive_features(clean)
    with one_thread():
        scored = predict_frame(champion.model, features).iloc[0]
        reasons = explain.explain_frame(champion.model, features, champion.background)[0]
    segment = str(scored["segment"])
    probabilities = {s: round(float(scored[f"p_{s.lower()}"]), 4) for s in SEGMENTS}
    return {
        "segment": segment,
        "probabilities": probabilities,
        "model_version": champion.version,
        "description": (champion.profiles.get(segment) or {}).get("description"),
        "imputed": imputed,
        "reasons": reasons,
        "values": {c: _plain(clean.iloc[0][c]) for c in ATTRIBUTE_COLUMNS},
    }


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value
