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
started=$(date +%s)
if ! airflow dags test segmentation_nightly >"$LOG" 2>&1; then
  echo "the DAG run failed; last errors from $LOG:" >&2
  grep -iE "error|exception" "$LOG" | tail -20 >&2
  exit 1
fi
echo "==> the DAG run succeeded in $(( $(date +%s) - started )) s"
segmentation report
