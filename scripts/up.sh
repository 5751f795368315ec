#!/usr/bin/env bash
# Airflow standalone with these DAGs, the Segmentation plugin, the segmentation_db connection and the embedded
# database. Airflow runs in its own session (setsid); stopping this script (Ctrl-C, SIGTERM, or Airflow exiting)
# stops every process of that session, including task processes that moved to their own process groups.
# SEGMENTATION_KEEP_PAUSED=1 keeps the segmentation DAGs paused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/airflow-env.sh"
cd "$ROOT"
segmentation init-db >/dev/null
airflow db migrate >"$DATA/airflow-migrate.log" 2>&1
airflow pools set segmentation_db "${SEGMENTATION_DB_POOL_SLOTS:-4}" "segmentation scoring shards" >/dev/null
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"

# Parse the DAGs into the metadata database now, so that they can be unpaused before the scheduler starts.
airflow dags reserialize >"$DATA/airflow-reserialize.log" 2>&1
if [ "${SEGMENTATION_KEEP_PAUSED:-0}" = "1" ]; then
  echo "==> segmentation DAGs left as they are (SEGMENTATION_KEEP_PAUSED=1)"
else
  for dag_id in segmentation_nightly segmentation_retrain; do
    airflow dags unpause "$dag_id" >/dev/null
  done
  echo "==> segmentation_nightly and segmentation_retrain are unpaused (SEGMENTATION_KEEP_PAUSED=1 keeps them paused)"
fi

echo "==> Airflow UI: http://localhost:${AIRFLOW__API__PORT}  (login: admin; the password is printed below"
echo "    by 'airflow standalone' and kept in $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)"
echo "==> Segmentation: http://localhost:${AIRFLOW__API__PORT}/segmentation/  (also 'Segmentation' in Airflow's navigation)"

setsid airflow standalone &
SESSION=$!  # setsid's child keeps this pid and leads the new session
echo "$SESSION" >"$DATA/airflow-standalone.sid"

# Zombies are left out: they have exited, and once their parent is gone reaping them is up to PID 1.
session_pids() { ps -o pid=,stat= --sid "$SESSION" 2>/dev/null | awk '$2 !~ /^Z/ {printf "%s ", $1}' || true; }

stop() {
  trap - EXIT INT TERM
  echo "==> stopping Airflow (session $SESSION)"
  kill -TERM -- "-$SESSION" 2>/dev/null || true
  for _ in $(seq 1 30); do
    pids=$(session_pids)
    [ -z "${pids// /}" ] && break
    kill -TERM $pids 2>/dev/null || true  # processes in other process groups of the session
    sleep 1
  done
  # A process can still fork while the others are being killed (the scheduler starting LocalExecutor workers),
  # so kill until the session is empty rather than once.
  for _ in $(seq 1 40); do
    pids=$(session_pids)
    [ -z "${pids// /}" ] && break
    echo "==> killing what is left: $pids"
    kill -KILL $pids 2>/dev/null || true
    wait "$SESSION" 2>/dev/null || true  # reap the session leader, our own child
    sleep 0.25
  done
  pids=$(session_pids)
  [ -n "${pids// /}" ] && echo "==> still running after SIGKILL: $pids" >&2
  rm -f "$DATA/airflow-standalone.sid"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wait "$SESSION"
