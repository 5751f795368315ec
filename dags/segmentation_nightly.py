"""Nightly customer segmentation: clean, features, retrain when due, score in shards, finalise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, SyncCallback, TriggerRule, dag, task
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from segmentation.config import (
    CHAMPION_ASSET_NAME,
    CUSTOMERS_ASSET_NAME,
    DB_POOL_NAME,
    FEATURES_ASSET_NAME,
    SEGMENTS_ASSET_NAME,
    get_settings,
)
from segmentation.dag_defaults import default_args, training_task_args

DOC_MD = """
### Nightly customer segmentation

Runs daily at 02:00 UTC, and again whenever `segmentation_retrain` promotes a new champion model or an upstream
loader announces a customer batch with an Asset event for `segmentation.customers`
(`POST /api/v2/assets/events`).

0. **not_a_backfill**: a backfill run (over past dates) skips every task and writes nothing: the pipeline
   always scores the current customers with the current champion, so a past date has nothing to recompute.
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

**Freshness deadline**: a run that has not finished within `SEGMENTATION_FRESHNESS_DEADLINE_HOURS` (default 4)
of being queued raises a `deadline_missed` alert naming the run and the step still running (Airflow's Deadline
Alert; the callback runs on a worker). **Lineage**: clean, features, score and finalise report the tables they
read and write to OpenLineage when a transport is configured; Airflow's Assets view shows
`segmentation.customers` -> `segmentation.customer_features` -> `segmentation.customer_segments` -> the CRM export.
"""

# Lineage in Airflow's Assets view: customers (read by clean) -> features -> segments (and the champion model).
# Nothing is scheduled on the features Asset, so its events start no run (no schedule loop).
CUSTOMERS = Asset(name=CUSTOMERS_ASSET_NAME)
FEATURES = Asset(name=FEATURES_ASSET_NAME)
# Read from the environment (no database) when the file is parsed, as default_args() does.
FRESHNESS_HOURS = get_settings().freshness_deadline_hours
# Refreshed by every successful nightly run; consumers such as a CRM export are scheduled on it.
SEGMENTS = Asset(name=SEGMENTS_ASSET_NAME)


@dag(
    dag_id="segmentation_nightly",
    # 02:00 UTC, a new champion, or an upstream loader's announcement of a customer batch (an Asset event).
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
        assets=Asset(name=CHAMPION_ASSET_NAME) | CUSTOMERS,
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["segmentation", "nightly", "scoring"],
    doc_md=DOC_MD,
    # Retries, execution_timeout from settings and the failure callback that records and announces a failure.
    default_args=default_args(),
    # Segments published within the freshness deadline of the run's queued time (runs triggered by hand or by
    # the champion Asset have no logical date); a miss raises the deadline_missed alert, on a worker.
    # SEGMENTATION_FRESHNESS_DEADLINE_HOURS=0 turns it off (for dag.test(), which cannot run a deadline).
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(hours=FRESHNESS_HOURS),
        callback=SyncCallback("segmentation.airflow_tasks.on_deadline_missed", kwargs={"hours": FRESHNESS_HOURS}),
    )
    if FRESHNESS_HOURS > 0
    else None,
)
def segmentation_nightly() -> None:
    # Every task reads the run id from its Airflow context; XCom carries only small figures. Each calls its step
    # through segmentation.airflow_tasks.run, which resolves the database and fails at once on a config fault.
    # A backfill run skips every task (trigger rules included) and writes nothing.
    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def not_a_backfill(dag_run=None) -> bool:
        from segmentation import airflow_tasks

        return airflow_tasks.not_a_backfill(dag_run)

    @task
    def start(run_id: str | None = None) -> str:
        from segmentation import airflow_tasks, tasks

        return airflow_tasks.run(tasks.start_run, run_id, "segmentation_nightly")

    @task(inlets=[CUSTOMERS])
    def clean(run_id: str | None = None) -> dict:
        from segmentation import airflow_tasks, tasks

        return airflow_tasks.run(tasks.clean, run_id)  # bad data fails at once: retrying cannot help

    @task(outlets=[FEATURES])
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

    @task(pool=DB_POOL_NAME, inlets=[FEATURES])  # the pool caps concurrent shards, and so database connections
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
    not_a_backfill() >> start() >> clean() >> features() >> retrain_if_due() >> shards
    score.expand_kwargs(shards) >> finalise()


segmentation_nightly()
