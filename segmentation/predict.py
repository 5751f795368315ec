"""Score one customer with the champion, as the seed's form did, with the reasons for its segment."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from segmentation import registry
from segmentation.cleaning import REASONS, validate
from segmentation.columns import ATTRIBUTE_COLUMNS, CUSTOMER_ID
from segmentation.db import connect
from segmentation.errors import DataError, ModelError
from segmentation.features import derive_features
from segmentation.scoring import predict_frame

log = logging.getLogger(__name__)


def predict_one(values: dict[str, Any], *, url: str | None = None, cache_dir: Path | None = None) -> dict[str, Any]:
    """Validate one customer's attributes, score them with the champion, describe the segment and give the top
    reasons (segmentation.explain) and the attributes that were empty and imputed by the model."""
    from segmentation.explain import background_frame, explain_frame

    raw = pd.DataFrame([{CUSTOMER_ID: "0", **{c: values.get(c) for c in ATTRIBUTE_COLUMNS}}])
    checked = validate(raw)
    if not checked.rejects.empty:
        reasons = checked.rejects.loc[0, "reasons"]
        raise DataError("invalid customer: " + "; ".join(f"{r} ({REASONS[r]})" for r in reasons))
    with connect(url) as conn, conn.cursor() as cur:
        current = registry.champion(cur)
        if current is None:
            raise ModelError("no champion model yet; run `segmentation train` first")
        model = registry.load_model(cur, current.version, cache_dir)
        cur.execute("SELECT profiles FROM segmentation.model_versions WHERE version = %s", (current.version,))
        profiles = cur.fetchone()[0] or {}
        background = background_frame(cur, current.version)
    features = derive_features(checked.clean.astype({"age": "float64"}))
    scored = predict_frame(model, features).iloc[0]
    segment = str(scored["segment"])
    clean = checked.clean.iloc[0]
    return {
        "segment": segment,
        "probabilities": {p[-1].upper(): round(float(scored[p]), 4) for p in ("p_a", "p_b", "p_c", "p_d")},
        "model_version": current.version,
        "description": profiles.get(segment, {}).get("description"),
        "reasons": explain_frame(model, features, background)[0],
        "imputed": [c for c in ATTRIBUTE_COLUMNS if pd.isna(clean[c])],
    }
