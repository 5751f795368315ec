-- Database roles, applied by `segmentation init-db --roles` (idempotent; re-run after migrations).
-- All are NOLOGIN groups: grant them to login users (docker/initdb does for the compose stack).
--   segmentation_pipeline  clean, features and scoring: writes the pipeline tables, but only reads
--                          model_versions, so a scoring credential can never replace a model artifact;
--   segmentation_training  registers and promotes model versions (reads the feature and label tables);
--   segmentation_ui        the Segmentation pages in Airflow's api-server: reads every table, writes nothing
--                          (a promotion from the UI runs as the segmentation_promote DAG, with the training login);
--   segmentation_analyst   reads the analyst views only, never raw rejects or model artifacts.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'segmentation_pipeline') THEN
        CREATE ROLE segmentation_pipeline NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'segmentation_training') THEN
        CREATE ROLE segmentation_training NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'segmentation_analyst') THEN
        CREATE ROLE segmentation_analyst NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'segmentation_ui') THEN
        CREATE ROLE segmentation_ui NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA segmentation TO segmentation_pipeline, segmentation_training, segmentation_analyst, segmentation_ui;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA segmentation TO segmentation_pipeline;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA segmentation TO segmentation_pipeline;
-- Scoring loads models; it never changes them.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON segmentation.model_versions FROM segmentation_pipeline;

REVOKE ALL ON ALL TABLES IN SCHEMA segmentation FROM segmentation_training;
GRANT SELECT ON ALL TABLES IN SCHEMA segmentation TO segmentation_training;
GRANT INSERT, UPDATE ON segmentation.model_versions TO segmentation_training;
GRANT USAGE, SELECT ON SEQUENCE segmentation.model_versions_version_seq TO segmentation_training;
-- Its run's step figures (pipeline_runs) and drift figures.
GRANT INSERT, UPDATE ON segmentation.pipeline_runs, segmentation.drift_metrics TO segmentation_training;

REVOKE ALL ON ALL TABLES IN SCHEMA segmentation FROM segmentation_analyst;
GRANT SELECT ON segmentation.current_segments, segmentation.segment_summary, segmentation.segment_changes
    TO segmentation_analyst;

-- Alerts (sql/008): every role that raises one stores it; analysts do not see them.
GRANT INSERT, UPDATE ON segmentation.alerts TO segmentation_training;
GRANT USAGE, SELECT ON SEQUENCE segmentation.alerts_alert_id_seq TO segmentation_training;

-- Finalise writes the per-run segment distributions that the Segmentation pages read.
GRANT SELECT, INSERT, UPDATE, DELETE ON segmentation.segment_distributions TO segmentation_pipeline;

-- The Segmentation pages read; they write nothing (promotion runs as a DAG with the training login).
REVOKE ALL ON ALL TABLES IN SCHEMA segmentation FROM segmentation_ui;
GRANT SELECT ON ALL TABLES IN SCHEMA segmentation TO segmentation_ui;

-- Scoring at scale (change capture and the segments swap): the pipeline runs the rebuild functions, which do
-- the DDL on segmentation_rebuild as the schema owner; it gets no rights on that schema itself.
GRANT EXECUTE ON FUNCTION segmentation.rebuild_create(text), segmentation.rebuild_drop(text),
    segmentation.rebuild_drop_others(text), segmentation.rebuild_index(text), segmentation.rebuild_swap(text),
    segmentation.take_all_score_pending() TO segmentation_pipeline;
GRANT USAGE ON SCHEMA segmentation_rebuild TO segmentation_pipeline;

-- Statistics after the clean and features steps rewrote much of their table (sql/012).
GRANT EXECUTE ON FUNCTION segmentation.analyze_after_bulk_write(text) TO segmentation_pipeline;

-- Per-shard distributions of a full rescore (sql/013), written by the shards and summed by the publish.
GRANT SELECT, INSERT, DELETE ON segmentation.rebuild_distributions TO segmentation_pipeline;

-- Analysts also read realised quality (sql/016) and the segment transitions and feed (sql/015), never the labels
-- or label outcomes behind them. The list is segmentation.dictionary.ANALYST_VIEWS.
GRANT SELECT ON segmentation.realised_quality, segmentation.realised_quality_daily TO segmentation_analyst;
GRANT SELECT ON segmentation.segment_transitions, segmentation.segment_feed TO segmentation_analyst;
-- Segment change feed and transitions (sql/015): scoring writes them (covered by the pipeline's grant on all
-- tables), the CRM export keeps its watermark in feed_consumers.
GRANT EXECUTE ON FUNCTION segmentation.rebuild_forget_exited(text) TO segmentation_pipeline;
