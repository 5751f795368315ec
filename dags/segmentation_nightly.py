"""Nightly customer segmentation: clean, features, retrain when due, score in shards, finalise."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, TriggerRule, dag, task

from segmentation.config import CHAMPION_ASSET_NAME, DB_POOL_NAME, SEGMENTS_ASSET_NAME
from segmentation.dag_defaults import default_args, training_task_args

DOC_MD = """
### Nightly customer segmentation

Runs daily at 02:00 UTC, and again whenever `segmentation_retrain` promotes a new champion model.

1. **clean**: validates new and changed rows of `segmentation.customers`; bad rows go to
   `segmentation.customer_rejects` with every reason. Fails without writing when more than
   `SEGMENTATION_REJECT_THRESHOLD` (default 20 %) of the batch is bad.
2. **features**: deterministic feature rows in `segmentation.customer_features`.
3. **retrain_if_due**: trains and gates a model when there is no champion or it is older than
   `SEGMENTATION_RETRAIN_INTERVAL_DAYS`.
4. **plan** and **score** (mapped): only customers that are new, changed, or scored by an older model,
   one task per shard; each shard is upserted in one transaction. Shards run in the Airflow pool
   `segmentation_db`, whose slots cap the database connections scoring holds at once.
5. **finalise**: run totals and data-quality figures in `segmentation.pipeline_runs` / `drift_metrics`, and
   an Asset event for `segmentation.customer_segments` with the run's counts in its extra, on which consumers
   (e.g. `segmentation_crm_export`) are scheduled.

Analysts query `segmentation.current_segments`, `segment_summary` and `segment_changes`.
"""

# Lineage in Airflow's Assets view: customers (read by clean) and the champion model -> segments.
CUSTOMERS = Asset(name="segmentation.customers")
# Refreshed by every successful nightly run; consumers such as a CRM export are scheduled on it.
SEGMENTS = Asset(name=SEGMENTS_ASSET_NAME)


@dag(
    dag_id="segmentation_nightly",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
        assets=[Asset(name=CHAMPION_ASSET_NAME)],
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["segmentation", "nightly", "scoring"],
    doc_md=DOC_MD,
    # Retries, execution_timeout from settings and the failure callback that records and announces a failure.
    default_args=default_args(),
)
def segmentation_nightly() -> None:
    # Every task reads the run id from its Airflow context; XCom carries only small figures. Each calls its step
    # through segmentation.airflow_tasks.run, which resolves the database and fails at once on a config fault.
    @task
    def start(run_id: str | None = None) -> str:
        from segmentation import airflow_tasks, tasks

        return airflow_tasks.run(tasks.start_run, run_id, "segmentation_nightly")

    @task(inlets=[CUSTOMERS])
    def clean(run_id: str | None = None) -> dict:
        from segmentation import airflow_tasks, tasks

        return airflow_tasks.run(tasks.clean, run_id)  # bad data fails at once: retrying cannot help

    @task
    def features(run_id: str | None = None) -> dict:
        from segmentation import airflow_tasks, tasks

        return airflow_tasks.run(tasks.build_features, run_id)

    @task(**training_task_args())  # its own timeout, at most one retry
    def retrain_if_due(run_id: str | None = None) -> dict:
        from segmentation import airflow_tasks, tasks

        return airflow_tasks.run(tasks.retrain_if_due, run_id)

    @task
    def plan(run_id: str | None = None) -> list[dict]:
        from segmentation import airflow_tasks, tasks

        return airflow_tasks.run(tasks.plan_scoring, run_id)

    @task(pool=DB_POOL_NAME)  # the pool caps concurrent shards, and so database connections
    def score(shard: int, model_version: int, run_id: str | None = None) -> dict:
        from segmentation import airflow_tasks, tasks

        return airflow_tasks.run(tasks.score_shard, run_id, shard, model_version)

    # Also runs when there was nothing to score; announces the refreshed segments with the run's counts.
    @task(trigger_rule=TriggerRule.NONE_FAILED, outlets=[SEGMENTS])
    def finalise(run_id: str | None = None, outlet_events=None) -> dict:
        from segmentation import airflow_tasks, tasks

        counts = airflow_tasks.run(tasks.finalise, run_id)
        outlet_events[SEGMENTS].extra = tasks.segments_event_extra(run_id, counts)
        return counts

    shards = plan()
    start() >> clean() >> features() >> retrain_if_due() >> shards
    score.expand_kwargs(shards) >> finalise()


segmentation_nightly()
