"""Promote or roll back to a model version on an operator's word; the new champion triggers a rescore."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Asset, Param, dag, task

from segmentation.config import CHAMPION_ASSET_NAME, PROMOTE_DAG_ID
from segmentation.dag_defaults import default_args

DOC_MD = """
### Promote or roll back the segmentation model

Makes model version `version` the champion, whatever the gate said of it: a promotion of a candidate, or a
rollback to an older version. The Segmentation UI's "Promote" and "Roll back" buttons trigger this DAG through
Airflow's REST API as the logged-in user, so Airflow decides who may (trigger access to this DAG) and records
who did (the run's triggering user, also written to `model_versions.promoted_by`).

The task logs in with the training connection `segmentation_db_training`; the api-server needs no login that
can write `model_versions`. When the champion changes, the task updates the `segmentation_champion_model`
Asset, which triggers `segmentation_nightly` to rescore every customer with it. A version that already is the
champion is a skipped task and no Asset event. An unknown version fails at once, without retries.

It is created unpaused, so promotion works out of the box where new DAGs start paused, and it holds nothing
that a running retrain or a pending approval holds.
"""

CHAMPION = Asset(name=CHAMPION_ASSET_NAME)


@dag(
    dag_id=PROMOTE_DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["segmentation", "training"],
    doc_md=DOC_MD,
    # Retries, execution_timeout from settings and the failure callback that records and announces a failure.
    default_args=default_args(),
    params={
        "version": Param(None, type="integer", minimum=1, description="the model version to make the champion"),
        "reason": Param("", type="string", description="why (kept in the registry's notes)"),
    },
)
def segmentation_promote() -> None:
    @task(outlets=[CHAMPION])
    def promote(run_id: str | None = None, params: dict | None = None, dag_run=None, outlet_events=None) -> dict:
        from segmentation import airflow_tasks

        return airflow_tasks.promote(run_id, params, dag_run, outlet_events[CHAMPION])

    promote()


segmentation_promote()
