"""CRM export of the segment change feed: runs whenever the nightly DAG updates segmentation.customer_segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, dag, task

from segmentation.config import CRM_EXPORT_ASSET_NAME, SEGMENTS_ASSET_NAME

DOC_MD = """
### CRM export of segment changes (exactly once)

Scheduled on the `segmentation.customer_segments` Asset, which `segmentation_nightly`'s finalise task updates.
The export does not read the triggering event: it reads `segmentation.segment_feed` (one row per segment change:
`entered`, `moved`, `exited`) after the consumer's watermark (`segmentation.feed_consumers`, consumer `crm`),
so changes of runs whose Asset event it missed are exported too.

Protocol, in one database transaction: lock the consumer's row, read the changes after its `last_change_id` in
`change_id` order, write ONE CSV `segment_feed_<first>-<last>.csv` (the change-id range, zero padded) to
`SEGMENTATION_EXPORT_DIR` (default `<data dir>/exports`) under a temporary name, fsync, rename, then advance
the watermark and commit. Nothing new: no file. A retry after a kill neither loses nor repeats a change: a file
that starts at the watermark + 1 (renamed, but its commit never happened) is adopted instead of written again.

Updates the `segmentation.crm_export` Asset with the exported range in the event's extra.
"""


@dag(
    dag_id="segmentation_crm_export",
    schedule=[Asset(name=SEGMENTS_ASSET_NAME)],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["segmentation", "example", "export"],
    doc_md=DOC_MD,
    default_args={"owner": "data-team", "retries": 2, "retry_delay": timedelta(minutes=1)},
)
def segmentation_crm_export() -> None:
    @task(outlets=[Asset(name=CRM_EXPORT_ASSET_NAME)])
    def export(outlet_events=None) -> dict:
        from segmentation import airflow_tasks, tasks

        figures = airflow_tasks.run(tasks.crm_export)
        outlet_events[Asset(name=CRM_EXPORT_ASSET_NAME)].extra = figures
        return figures

    export()


segmentation_crm_export()
