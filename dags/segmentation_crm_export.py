"""Example consumer of refreshed segments: runs whenever the nightly DAG updates segmentation.customer_segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, dag, task

from segmentation.config import SEGMENTS_ASSET_NAME

DOC_MD = """
### Example: export changed segments to a CRM

Scheduled on the `segmentation.customer_segments` Asset, which `segmentation_nightly`'s finalise task updates
with the run's counts in the event's extra. This example only counts the segment changes of the triggering
run (`segmentation.segment_changes`) and logs what a CRM export would send; replace the task body with the
real export. Tagged `example`.
"""


@dag(
    dag_id="segmentation_crm_export",
    schedule=[Asset(name=SEGMENTS_ASSET_NAME)],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["segmentation", "example"],
    doc_md=DOC_MD,
    default_args={"owner": "data-team", "retries": 2, "retry_delay": timedelta(minutes=1)},
)
def segmentation_crm_export() -> None:
    @task
    def export(triggering_asset_events=None) -> dict:
        from segmentation import airflow_tasks, tasks

        extras = [e.extra for events in (triggering_asset_events or {}).values() for e in events]
        return airflow_tasks.run(tasks.crm_export_summary, extras)

    export()


segmentation_crm_export()
