-- The transition and realised-quality relations that the Segmentation pages read, by the columns the pages
-- rely on, as plain tables that the UI tests fill with known numbers. Whatever the migrations made of these
-- names (table or view) is replaced in the test's own database, so the expected figures depend only on the rows
-- a test inserts.
DO $$
DECLARE
    name text;
    kind "char";
BEGIN
    FOREACH name IN ARRAY ARRAY['segment_transitions', 'realised_quality', 'realised_quality_daily'] LOOP
        SELECT c.relkind INTO kind FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = 'segmentation' AND c.relname = name;
        IF kind IN ('v', 'm') THEN
            EXECUTE format('DROP %s segmentation.%I CASCADE',
                           CASE kind WHEN 'v' THEN 'VIEW' ELSE 'MATERIALIZED VIEW' END, name);
        ELSIF kind IS NOT NULL THEN
            EXECUTE format('DROP TABLE segmentation.%I CASCADE', name);
        END IF;
        kind := NULL;
    END LOOP;
END
$$;

CREATE TABLE segmentation.segment_transitions (
    run_id        text NOT NULL,
    from_segment  char(1),
    to_segment    char(1) NOT NULL,
    cause         text NOT NULL CHECK (cause IN ('new', 'model', 'attributes', 'both')),
    customers     bigint NOT NULL
);

CREATE TABLE segmentation.realised_quality (
    model_version  integer NOT NULL,
    labelled       bigint NOT NULL,
    accuracy       double precision NOT NULL,
    macro_f1       double precision NOT NULL,
    log_loss       double precision,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL
);

CREATE TABLE segmentation.realised_quality_daily (
    day            date NOT NULL,
    model_version  integer NOT NULL,
    labelled       bigint NOT NULL,
    accuracy       double precision NOT NULL,
    macro_f1       double precision NOT NULL,
    log_loss       double precision
);
