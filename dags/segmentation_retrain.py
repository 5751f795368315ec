"""Manual retraining: train and register a challenger, gate it against the champion, announce a promotion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Asset, Param, dag, task

from segmentation.columns import CANDIDATE_NAMES
from segmentation.config import CHAMPION_ASSET_NAME, REVIEW_TASK_ID
from segmentation.dag_defaults import default_args, review_args, training_task_args

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

With `SEGMENTATION_PROMOTION_APPROVAL=required` a challenger that passed the gate (or `force_promote`) is not
promoted by `promote`: the `review` task waits in Airflow's *Required actions* for a person to approve or reject
it (with a comment), and rejects it when nobody answers within `SEGMENTATION_APPROVAL_TIMEOUT_HOURS`. Approval
promotes it as the approver, exactly as `segmentation_promote` does; rejection leaves it a candidate.
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
    def promote(version: int, run_id: str | None = None, params: dict | None = None) -> dict:
        from segmentation import airflow_tasks, tasks

        decision = airflow_tasks.run(tasks.evaluate_and_promote, run_id, version, force=params["force_promote"])
        airflow_tasks.run(tasks.finalise, run_id)
        return {k: decision.get(k) for k in ("promoted", "awaiting_review", "review_body")}

    @task.short_circuit
    def promoted(decision: dict) -> bool:
        return bool(decision["promoted"])

    @task(outlets=[Asset(name=CHAMPION_ASSET_NAME)])
    def announce_champion(version: int) -> int:
        return version

    version = train()
    decision = promote(version)
    approval = review_args()  # None: no approval task (SEGMENTATION_PROMOTION_APPROVAL=off)
    if approval is None:
        promoted(decision) >> announce_champion(version)
        return

    @task.short_circuit
    def awaiting_review(decision: dict) -> bool:
        return bool(decision["awaiting_review"])

    @task
    def record_review(version: int, response: dict, run_id: str | None = None) -> dict:
        from segmentation import airflow_tasks, tasks

        return {"promoted": airflow_tasks.run(tasks.record_review, run_id, version, response)["changed"]}

    review = HITLOperator(
        task_id=REVIEW_TASK_ID,
        subject="Promote model version {{ ti.xcom_pull(task_ids='train') }} to champion?",
        body="{{ ti.xcom_pull(task_ids='promote')['review_body'] }}",
        options=["Approve", "Reject"],
        params={"comment": Param("", type="string", description="why (kept in the registry)")},
        **approval,
    )
    awaiting_review(decision) >> review
    promoted(record_review(version, review.output)) >> announce_champion(version)


segmentation_retrain()
