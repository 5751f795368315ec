#!/usr/bin/env bash
# Airflow standalone with these DAGs, the segmentation_db connection and the embedded database.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/airflow-env.sh"
cd "$ROOT"
segmentation init-db >/dev/null
airflow db migrate >"$ROOT/.data/airflow-migrate.log" 2>&1
airflow pools set segmentation_db "${SEGMENTATION_DB_POOL_SLOTS:-4}" "segmentation scoring shards" >/dev/null
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
echo "==> Airflow UI: http://localhost:${AIRFLOW__API__PORT}  (login: admin; the password is printed below"
echo "    by 'airflow standalone' and kept in $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)"
exec airflow standalone
