-- The model that scores is refitted on every labelled customer, the stable holdout included, so it can no
-- longer be judged on that holdout. The evaluation model (same settings, fitted without the holdout) is kept
-- next to it: the promotion gate compares evaluation models on the holdout, which neither was fitted on.
-- explain_background: a small sample of the training rows, the reference that segmentation.explain measures
-- each attribute's effect against.
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS eval_artifact bytea;
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS eval_sha256 char(64);
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS explain_background jsonb;
