# Sourced by the scripts: Airflow's home under the data folder (SEGMENTATION_DATA_DIR, default .data), its
# metadata database beside the customer
# database (the embedded server unless SEGMENTATION_DATABASE_URL names one), DAGs from dags/.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$ROOT/.venv/bin:$PATH"
DATA="${SEGMENTATION_DATA_DIR:-$ROOT/.data}"
mkdir -p "$DATA"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$DATA/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR="${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$DATA/run}"
mkdir -p "$AIRFLOW_HOME" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
if [ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]; then
  AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=$(segmentation db-url --database airflow --driver psycopg2)
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
fi
if [ -z "${AIRFLOW_CONN_SEGMENTATION_DB:-}" ]; then
  AIRFLOW_CONN_SEGMENTATION_DB=$(segmentation db-url --airflow-conn)
  export AIRFLOW_CONN_SEGMENTATION_DB
fi
