-- Signed model artifacts, failed-run records and alerts.
--
-- artifact_hmac: HMAC-SHA256 of the artifact (see segmentation/signing.py) keyed by a secret kept outside this
-- database. Workers verify it before unpickling, so a credential that can rewrite model_versions cannot make
-- them run code. Versions registered before this migration have none and are refused until an operator
-- re-signs them (`segmentation model sign VERSION`).
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS artifact_hmac char(64);

-- Why a run failed: the failing task and a one-line error (status 'failed'); cleared by a later success.
ALTER TABLE segmentation.pipeline_runs ADD COLUMN IF NOT EXISTS failed_task text;
ALTER TABLE segmentation.pipeline_runs ADD COLUMN IF NOT EXISTS error text;

-- Every alert raised, whether or not it could be delivered.
CREATE TABLE IF NOT EXISTS segmentation.alerts (
    alert_id      bigserial PRIMARY KEY,
    raised_at     timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL
                  CHECK (kind IN ('failed_run', 'batch_refused', 'drift_retrain', 'challenger_refused',
                                  'share_moved')),
    dag_id        text,
    run_id        text,
    task_id       text,
    message       text NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}',
    delivered     boolean NOT NULL DEFAULT false,
    delivery      text
);
CREATE INDEX IF NOT EXISTS alerts_raised_idx ON segmentation.alerts (raised_at);
CREATE INDEX IF NOT EXISTS alerts_run_idx ON segmentation.alerts (run_id);
