# The project on the official Airflow image, installed with the same pinned constraints as local runs.
# DAGs, SQL and code are baked in, so every container (each Celery worker too) runs without shared disk.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 . /opt/segmentation
WORKDIR /opt/segmentation
RUN pip install --no-cache-dir -c constraints.txt -e ".[airflow]"
WORKDIR ${AIRFLOW_HOME}
# Container-local: the model cache (keyed by sha256, filled from the registry table) and exported copies.
ENV SEGMENTATION_SQL_DIR=/opt/segmentation/sql \
    SEGMENTATION_MODELS_DIR=/opt/airflow/models \
    SEGMENTATION_DATA_DIR=/opt/airflow/segmentation-data
# Mount point of the CRM export volume (docker-compose.yaml), created here so that the volume belongs to airflow.
RUN mkdir -p /opt/airflow/crm-exports
