-- Approval before promotion (SEGMENTATION_PROMOTION_APPROVAL=required): a challenger that passed the gate waits
-- as a candidate for a person's decision in segmentation_retrain's human-in-the-loop task "review".
--   review_run_id   the run that asked for the decision (set when the challenger is held);
--   reviewed_by     who decided, or 'timeout' when nobody answered in time;
--   review_comment  the reviewer's comment from Airflow's Required actions form;
--   reviewed_at     when the decision was recorded.
-- A held version is "awaiting approval" while review_run_id is set, reviewed_by is not and it is a candidate.
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS review_run_id text;
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS reviewed_by text;
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS review_comment text;
ALTER TABLE segmentation.model_versions ADD COLUMN IF NOT EXISTS reviewed_at timestamptz;

-- The alert raised while a challenger awaits approval.
ALTER TABLE segmentation.alerts DROP CONSTRAINT IF EXISTS alerts_kind_check;
ALTER TABLE segmentation.alerts ADD CONSTRAINT alerts_kind_check
    CHECK (kind IN ('failed_run', 'batch_refused', 'drift_retrain', 'challenger_refused', 'share_moved',
                    'approval_pending'));
