-- The evaluation model (sql/005) is unpickled by the promotion gate, so it is signed like the served one.
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS eval_artifact_hmac text;
