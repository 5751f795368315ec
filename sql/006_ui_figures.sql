-- What the Segmentation pages in the Airflow UI read. Idempotent.
-- Who promoted or rolled back a version (an Airflow user name, or 'pipeline' for the gate).
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS promoted_by text;

-- Per run, pre-aggregated at finalise so that the overview never scans customer_segments: customers per
-- segment and attribute bucket (attribute '_total', bucket '' holds each segment's size). The population is
-- the sum over segments.
CREATE TABLE IF NOT EXISTS segmentation.segment_distributions (
    run_id     text NOT NULL,
    segment    char(1) NOT NULL,
    attribute  text NOT NULL,
    bucket     text NOT NULL,
    customers  bigint NOT NULL,
    PRIMARY KEY (run_id, segment, attribute, bucket)
);

-- The overview and quality pages read the latest runs and their figures.
CREATE INDEX IF NOT EXISTS pipeline_runs_finished_idx ON segmentation.pipeline_runs (finished_at);
CREATE INDEX IF NOT EXISTS drift_metrics_metric_idx ON segmentation.drift_metrics (metric, run_id);
CREATE INDEX IF NOT EXISTS customer_rejects_rejected_at_idx ON segmentation.customer_rejects (rejected_at);
