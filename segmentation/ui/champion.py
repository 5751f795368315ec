"""The champion model for the what-if form, verified once and cached per process by version and sha256, with the
background rows its reasons are measured against. Scoring itself is ``segmentation.predict.score_customer``."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from segmentation import explain, registry
from segmentation.errors import ModelError
from segmentation.predict import Scorer, stored_profiles
from segmentation.ui import queries

log = logging.getLogger(__name__)

# The what-if's reasons use the first rows of the version's stored explanation background (itself a random
# sample): exact Shapley values cost one prediction per coalition and background row, and 10 rows keep the
# what-if well under 100 ms (BENCHMARKS.md, "Segmentation UI").
WHAT_IF_BACKGROUND_ROWS = 10

_lock = threading.Lock()
_cache: dict[tuple[int, str], Scorer] = {}


def current(cur: Any, cache_dir: Path | None = None, *, key: bytes | None = None) -> Scorer:
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
            cached = Scorer(version[0], model, stored_profiles(cur, version[0]), background)
            _cache.clear()  # only the current champion is kept
            _cache[version] = cached
            log.info("champion v%d (sha256 %s) loaded for the what-if form", version[0], version[1][:12])
    return cached


def clear() -> None:
    """Forget the cached champion (tests)."""
    with _lock:
        _cache.clear()
