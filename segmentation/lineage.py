"""OpenLineage datasets of the nightly steps: the tables each step reads and writes, reported at run time to
Airflow's hook lineage collector, from which the OpenLineage provider builds the task's inputs and outputs.

The datasets are named after the real customer database (``postgres://host:port`` namespace,
``database.segmentation.table`` name, the provider's convention for PostgreSQL), which a DAG cannot know when it
is parsed. Without the OpenLineage provider, or with it disabled, the collector is a no-op and nothing is done.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

SCHEMA = "segmentation"
# Task-layer step (function name) -> (tables read, tables written).
STEP_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "clean": (("customers",), ("clean_customers", "customer_rejects")),
    "build_features": (("clean_customers",), ("customer_features",)),
    "score_shard": (("customer_features", "model_versions"), ("customer_segments", "segment_history")),
    "finalise": (("customer_segments",), ("pipeline_runs", "drift_metrics", "segment_distributions")),
}


def table_uri(url: str, table: str) -> str:
    """The ``postgres://`` Asset URI of ``segmentation.<table>`` in the database at ``url`` (no login)."""
    parsed = make_url(url)
    host = parsed.host or "localhost"  # a socket directory: the server is on this host
    return f"postgres://{host}:{parsed.port or 5432}/{parsed.database}/{SCHEMA}/{table}"


def step_uris(step: str, url: str) -> tuple[list[str], list[str]]:
    """The input and output table URIs of a task-layer step (empty for a step without lineage)."""
    inputs, outputs = STEP_TABLES.get(step, ((), ()))
    return [table_uri(url, t) for t in inputs], [table_uri(url, t) for t in outputs]


def _context() -> Any:
    """The collector's context object: a hook standing for the customer database."""
    from airflow.sdk import BaseHook

    return BaseHook()


def fresh_collector() -> None:
    """Start the task with an empty hook lineage collector.

    Airflow keeps one collector per process; a worker runs each task in a process of its own, but ``dag.test()``
    and ``airflow tasks test`` run several in one, where a task would otherwise report its predecessors' tables.
    """
    try:
        from airflow.sdk.lineage import get_hook_lineage_collector

        get_hook_lineage_collector.cache_clear()
    except Exception as exc:
        log.debug("hook lineage collector not reset: %s", exc)


def report(step: str, url: str) -> int:
    """Report the tables of ``step`` to Airflow's hook lineage collector; how many datasets (never raises)."""
    inputs, outputs = step_uris(step, url)
    if not inputs and not outputs:
        return 0
    try:
        from airflow.sdk.lineage import get_hook_lineage_collector

        collector = get_hook_lineage_collector()
        context = _context()
        for uri in inputs:
            collector.add_input_asset(context, uri=uri)
        for uri in outputs:
            collector.add_output_asset(context, uri=uri)
    except Exception as exc:  # lineage is an extra: a fault here must not fail the step
        log.warning("lineage of step %s not reported: %s: %s", step, type(exc).__name__, exc)
        return 0
    return len(inputs) + len(outputs)
