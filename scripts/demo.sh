#!/usr/bin/env bash
# The nightly pipeline end to end: schema, synthetic customers, `airflow dags test segmentation_nightly`,
# then a segment summary and the psql command to query it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/airflow-env.sh"
cd "$ROOT"
LOG="$DATA/demo-nightly.log"

echo "==> customer database: $(segmentation db-url | sed -E 's#://([^:@/]*):[^@]*@#://\1:***@#')"
segmentation init-db >/dev/null
echo "==> Airflow metadata database"
airflow db migrate >"$DATA/airflow-migrate.log" 2>&1
airflow pools set segmentation_db "${SEGMENTATION_DB_POOL_SLOTS:-4}" "segmentation scoring shards" >/dev/null
echo "==> generating ${ROWS:-50000} synthetic customers (30 % labelled)"
segmentation generate --rows "${ROWS:-50000}" --seed "${SEED:-0}"
echo "==> airflow dags test segmentation_nightly (log: $LOG)"
# OpenLineage events of the run go to a file (README, "Lineage"), unless a transport is already configured.
LINEAGE="$DATA/openlineage.jsonl"
export AIRFLOW__OPENLINEAGE__TRANSPORT="${AIRFLOW__OPENLINEAGE__TRANSPORT:-{\"type\": \"file\", \"log_file_path\": \"$LINEAGE\", \"append\": true\}}"
export AIRFLOW__OPENLINEAGE__NAMESPACE="${AIRFLOW__OPENLINEAGE__NAMESPACE:-segmentation-demo}"
started=$(date +%s)
# dag.test() cannot run a DAG with a Deadline Alert (apache/airflow#73428): the freshness deadline is off here.
if ! SEGMENTATION_FRESHNESS_DEADLINE_HOURS=0 airflow dags test segmentation_nightly >"$LOG" 2>&1; then
  echo "the DAG run failed; last errors from $LOG:" >&2
  grep -iE "error|exception" "$LOG" | tail -20 >&2
  exit 1
fi
echo "==> the DAG run succeeded in $(( $(date +%s) - started )) s"
if [ -f "$LINEAGE" ]; then
  echo "==> OpenLineage events (inputs and outputs per task) in $LINEAGE"
fi
segmentation report
