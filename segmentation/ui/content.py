"""What the pages and the API show, assembled once for both: the overview, the registry, data quality, one
customer (with the reasons of ``explain.explain_customer``) and the what-if (``predict.score_customer``)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, status

from segmentation import explain, predict, registry, signing
from segmentation.columns import ATTRIBUTE_COLUMNS, SEGMENTS
from segmentation.config import REVIEW_TASK_ID, Settings
from segmentation.db import connect
from segmentation.errors import ModelError, NotFoundError
from segmentation.ui import champion, charts, queries

log = logging.getLogger(__name__)

RETRAIN_DAG_ID = "segmentation_retrain"


def summary_data(settings: Settings) -> dict[str, Any]:
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        latest = queries.latest_distribution_run(cur)
        dist = queries.distributions(cur, latest["run_id"]) if latest else {}
        totals = queries.segment_totals(dist)
        customers = sum(totals.values())
        data = {
            "run_id": latest["run_id"] if latest else None,
            "customers_scored": customers,
            "segments": [
                {"segment": s, "customers": n, "share": round(n / customers, 4) if customers else 0.0}
                for s, n in totals.items()
            ],
            "share_history": queries.share_history(cur),
            "freshness": queries.freshness(cur),
            "last_nightly_run": queries.last_nightly_run(cur),
            "quarantine": queries.quarantine(cur),
            "champion": None,
            "distributions": {k: v for k, v in dist.items() if k != charts.TOTAL_ATTRIBUTE},
        }
        row = queries.champion_row(cur)
    if row:
        data["champion"] = {
            "version": row["version"],
            "model": row["model_name"],
            "descriptions": {s: (row["profiles"].get(s) or {}).get("description") for s in SEGMENTS},
        }
    return data


def review_path(version: dict[str, Any]) -> str | None:
    """The path of Airflow's Required actions page of a version awaiting approval in segmentation_retrain's review
    task (after Airflow's base URL), or None (no pending review there: a nightly's candidate is promoted here)."""
    if not version.get("awaiting_approval") or version.get("review_dag_id") != RETRAIN_DAG_ID:
        return None
    run = quote(str(version["review_run_id"]), safe="")
    return f"/dags/{RETRAIN_DAG_ID}/runs/{run}/tasks/{REVIEW_TASK_ID}/required_actions"


def models_data(settings: Settings, promotions: list[dict[str, Any]]) -> dict[str, Any]:
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        versions = [{**v, "review_path": review_path(v)} for v in queries.model_versions(cur)]
        row = queries.champion_row(cur)
    current = None
    if row:
        metrics = row["metrics"] or {}
        current = {
            "version": row["version"],
            "model": row["model_name"],
            "confusion_labels": metrics.get("confusion_labels", list(SEGMENTS)),
            "confusion_matrix": metrics.get("confusion_matrix"),
            "ece_per_class": metrics.get("ece_per_class"),
            "reliability": metrics.get("reliability"),
        }
    return {"versions": versions, "champion": current, "promotions": promotions}


def quality_data(settings: Settings) -> dict[str, Any]:
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        rows = queries.quality(cur)
    return {"drift_threshold": settings.drift_threshold, "figures": rows}


def customer_data(settings: Settings, customer_id: int) -> dict[str, Any]:
    with connect(settings.database_url) as conn, conn.cursor() as cur:
        row = queries.customer(cur, customer_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no customer with id {customer_id}")
        history = queries.customer_history(cur, customer_id)
        description = None
        if row["segment"]:
            profiles = predict.stored_profiles(cur, row["model_version"])
            description = (profiles.get(row["segment"]) or {}).get("description")
        reasons = _customer_reasons(cur, customer_id, settings) if row["segment"] else None
    probabilities = (
        {s: round(float(row[f"p_{s.lower()}"]), 4) for s in SEGMENTS} if row["segment"] is not None else None
    )
    return {
        "customer_id": customer_id,
        "attributes": {c: row[c] for c in ATTRIBUTE_COLUMNS},
        "updated_at": row["updated_at"],
        "segment": row["segment"],
        "probabilities": probabilities,
        "model_version": row["model_version"],
        "scored_at": row["scored_at"],
        "description": description,
        "history": history,
        "reasons": reasons,
        "quarantine": row["quarantine"],
    }


def _customer_reasons(cur: Any, customer_id: int, settings: Settings) -> list[dict[str, Any]] | None:
    """The reasons of ``explain.explain_customer`` (the model version that scored the customer, against its
    stored background), with the per-process cached champion when that version scored it; None when that
    version can no longer explain it (for example the customer's features are gone)."""

    cache_dir, key = settings.model_cache_dir, signing.signing_key(settings)

    def load(cur: Any, version: int) -> Any:
        current = champion.current(cur, cache_dir, key=key)
        return current.model if current.version == version else registry.load_model(cur, version, cache_dir, key=key)

    try:
        with predict.one_thread():
            return explain.explain_customer(cur, customer_id, cache_dir=cache_dir, load_model=load)["reasons"]
    except (NotFoundError, ModelError) as exc:
        log.warning("no reasons for customer %d: %s", customer_id, exc)
        return None


def predict_data(settings: Settings, values: dict[str, str | None]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(result, field errors): the what-if for raw attribute values, scored by ``predict.score_customer`` with
    the cached champion (the database is asked only for valid values)."""

    def cached_champion() -> predict.Scorer:
        with connect(settings.database_url) as conn, conn.cursor() as cur:
            return champion.current(cur, settings.model_cache_dir, key=signing.signing_key(settings))

    try:
        return predict.score_customer(values, cached_champion), {}
    except predict.InvalidCustomer as exc:
        return None, exc.errors
