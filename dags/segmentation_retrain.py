"""Manual retraining: train and register a challenger, gate it against the champion, announce a promotion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from segmentation.columns import CANDIDATE_NAMES
from segmentation.config import CHAMPION_ASSET_NAME
from segmentation.dag_defaults import default_args, training_task_args

DOC_MD = """
### Retrain the segmentation model

Trigger by hand (Trigger DAG w/ config). Params:

* `force_promote`: promote even when the challenger does not beat the champion (recorded in the registry).
* `cv_folds`: folds of the stratified cross-validation used to compare candidates and tune.
* `row_cap`: most labelled customers to train on (stratified sample above it); 0 means the configured default.
* `candidates`: candidate model families to compare; empty means all seven.

The challenger and the champion are evaluated on the same stable holdout customers. A refused
promotion is a successful run whose `promote` task says why. A promotion updates the
`segmentation_champion_model` Asset, which triggers `segmentation_nightly` to rescore everyone.
"""


@dag(
    dag_id="segmentation_retrain",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["segmentation", "training"],
    doc_md=DOC_MD,
    # Retries, execution_timeout from settings and the failure callback that records and announces a failure.
    default_args=default_args(retry_delay=timedelta(minutes=2)),
    params={
        "force_promote": Param(False, type="boolean", description="promote even if the gate refuses"),
        "cv_folds": Param(5, type="integer", minimum=2, maximum=20, description="cross-validation folds"),
        "row_cap": Param(0, type="integer", minimum=0, description="max labelled rows; 0 = configured default"),
        "candidates": Param(
            [],
            type="array",
            items={"type": "string", "enum": list(CANDIDATE_NAMES)},
            description="empty = all candidates",
        ),
    },
)
def segmentation_retrain() -> None:
    @task(**training_task_args())  # its own timeout, at most one retry
    def train(run_id: str | None = None, params: dict | None = None) -> int:
        from segmentation import airflow_tasks, tasks

        airflow_tasks.run(tasks.start_run, run_id, "segmentation_retrain")
        trained = airflow_tasks.run(
            tasks.train,
            run_id,
            trigger="manual",
            candidates=params["candidates"] or None,
            cv_folds=params["cv_folds"],
            row_cap=params["row_cap"] or None,
        )
        return trained["version"]

    @task
    def promote(version: int, run_id: str | None = None, params: dict | None = None) -> bool:
        from segmentation import airflow_tasks, tasks

        decision = airflow_tasks.run(tasks.evaluate_and_promote, run_id, version, force=params["force_promote"])
        airflow_tasks.run(tasks.finalise, run_id)
        return decision["promoted"]

    @task.short_circuit
    def promoted(decision: bool) -> bool:
        return decision

    @task(outlets=[Asset(name=CHAMPION_ASSET_NAME)])
    def announce_champion(version: int) -> int:
        return version

    version = train()
    promoted(promote(version)) >> announce_champion(version)


segmentation_retrain()
