# The project on the official Airflow image, installed with the same pinned constraints as local runs.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 . /opt/segmentation
RUN pip install --no-cache-dir -c /opt/segmentation/constraints.txt -e "/opt/segmentation[airflow]"
ENV SEGMENTATION_SQL_DIR=/opt/segmentation/sql \
    SEGMENTATION_MODELS_DIR=/opt/airflow/models \
    SEGMENTATION_DATA_DIR=/opt/airflow/segmentation-data
