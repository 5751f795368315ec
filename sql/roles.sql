-- Database roles, applied by `segmentation init-db --roles` (idempotent; re-run after migrations).
-- segmentation_pipeline writes the pipeline tables; segmentation_analyst reads the analyst views only,
-- never raw rejects or model artifacts. Both are NOLOGIN groups: grant them to login users.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'segmentation_pipeline') THEN
        CREATE ROLE segmentation_pipeline NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'segmentation_analyst') THEN
        CREATE ROLE segmentation_analyst NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA segmentation TO segmentation_pipeline, segmentation_analyst;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA segmentation TO segmentation_pipeline;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA segmentation TO segmentation_pipeline;

REVOKE ALL ON ALL TABLES IN SCHEMA segmentation FROM segmentation_analyst;
GRANT SELECT ON segmentation.current_segments, segmentation.segment_summary, segmentation.segment_changes
    TO segmentation_analyst;

-- Scoring at scale (change capture and the segments swap): the pipeline runs the rebuild functions, which do
-- the DDL on segmentation_rebuild as the schema owner; it gets no rights on that schema itself.
GRANT EXECUTE ON FUNCTION segmentation.rebuild_create(text), segmentation.rebuild_drop(text),
    segmentation.rebuild_drop_others(text), segmentation.rebuild_index(text), segmentation.rebuild_swap(text),
    segmentation.take_all_score_pending() TO segmentation_pipeline;
GRANT USAGE ON SCHEMA segmentation_rebuild TO segmentation_pipeline;
