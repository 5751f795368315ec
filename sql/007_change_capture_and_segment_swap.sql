-- Change capture and a swappable segments table.
--
-- 1. Queues of changed ids, written by statement-level triggers with transition tables: customers ->
--    clean_pending, clean_customers -> features_pending, customer_features -> score_pending. Each step takes
--    its queue (DELETE ... RETURNING) inside its own transaction, so a killed step leaves the queue intact,
--    and a row changed while a step runs is queued again by the trigger and picked up by the next run.
-- 2. customer_segments becomes a partitioned table with one partition covering every id, so that a full
--    rescore can build a fresh table and swap it in with DETACH/ATTACH PARTITION in one short transaction;
--    the analysts' views keep pointing at the (unchanged) parent.
-- 3. segment_counts: customers per segment, maintained by every write to customer_segments.

CREATE TABLE IF NOT EXISTS segmentation.clean_pending (customer_id bigint PRIMARY KEY);
CREATE TABLE IF NOT EXISTS segmentation.features_pending (customer_id bigint PRIMARY KEY);
CREATE TABLE IF NOT EXISTS segmentation.score_pending (customer_id bigint PRIMARY KEY);

CREATE OR REPLACE FUNCTION segmentation.queue_for_clean() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO segmentation.clean_pending (customer_id)
    SELECT customer_id FROM changed_rows WHERE customer_id IS NOT NULL
    ON CONFLICT (customer_id) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION segmentation.queue_for_features() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO segmentation.features_pending (customer_id)
    SELECT customer_id FROM changed_rows
    ON CONFLICT (customer_id) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION segmentation.queue_for_scoring() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO segmentation.score_pending (customer_id)
    SELECT customer_id FROM changed_rows
    ON CONFLICT (customer_id) DO NOTHING;
    RETURN NULL;
END
$$;

-- A trigger with a transition table handles one event, hence one trigger per INSERT and per UPDATE.
CREATE TRIGGER customers_queue_insert AFTER INSERT ON segmentation.customers
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION segmentation.queue_for_clean();
CREATE TRIGGER customers_queue_update AFTER UPDATE ON segmentation.customers
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION segmentation.queue_for_clean();
CREATE TRIGGER clean_customers_queue_insert AFTER INSERT ON segmentation.clean_customers
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION segmentation.queue_for_features();
CREATE TRIGGER clean_customers_queue_update AFTER UPDATE ON segmentation.clean_customers
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION segmentation.queue_for_features();
CREATE TRIGGER customer_features_queue_insert AFTER INSERT ON segmentation.customer_features
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION segmentation.queue_for_scoring();
CREATE TRIGGER customer_features_queue_update AFTER UPDATE ON segmentation.customer_features
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION segmentation.queue_for_scoring();

-- Backfill: what the steps' anti-joins would have found before the triggers existed.
INSERT INTO segmentation.clean_pending (customer_id)
SELECT c.customer_id
FROM segmentation.customers AS c
LEFT JOIN segmentation.clean_customers AS k USING (customer_id)
WHERE (k.customer_id IS NULL OR k.source_updated_at < c.updated_at)
  AND NOT EXISTS (SELECT 1 FROM segmentation.customer_rejects AS r
                  WHERE r.customer_id = c.customer_id AND r.source_updated_at = c.updated_at)
ON CONFLICT DO NOTHING;
INSERT INTO segmentation.features_pending (customer_id)
SELECT k.customer_id
FROM segmentation.clean_customers AS k
LEFT JOIN segmentation.customer_features AS f USING (customer_id)
WHERE f.customer_id IS NULL OR f.source_updated_at IS DISTINCT FROM k.source_updated_at
ON CONFLICT DO NOTHING;
INSERT INTO segmentation.score_pending (customer_id)
SELECT f.customer_id
FROM segmentation.customer_features AS f
LEFT JOIN segmentation.customer_segments AS s USING (customer_id)
WHERE s.customer_id IS NULL OR s.source_updated_at IS DISTINCT FROM f.source_updated_at
ON CONFLICT DO NOTHING;

-- customer_segments: the existing table becomes the one partition of a partitioned parent.
ALTER TABLE segmentation.customer_segments RENAME TO customer_segments_live;
ALTER TABLE segmentation.customer_segments_live RENAME CONSTRAINT customer_segments_pkey TO customer_segments_live_pkey;
CREATE TABLE segmentation.customer_segments (
    customer_id        bigint NOT NULL,
    segment            char(1) NOT NULL
                       CONSTRAINT customer_segments_segment_check CHECK (segment IN ('A', 'B', 'C', 'D')),
    p_a                double precision NOT NULL,
    p_b                double precision NOT NULL,
    p_c                double precision NOT NULL,
    p_d                double precision NOT NULL,
    model_version      integer NOT NULL,
    source_updated_at  timestamptz NOT NULL,
    scored_at          timestamptz NOT NULL DEFAULT now(),
    run_id             text NOT NULL,
    PRIMARY KEY (customer_id)
) PARTITION BY RANGE (customer_id);
ALTER TABLE segmentation.customer_segments
    ATTACH PARTITION segmentation.customer_segments_live FOR VALUES FROM (MINVALUE) TO (MAXVALUE);

-- The views referred to the renamed table; point them at the parent again (same text as 002).
CREATE OR REPLACE VIEW segmentation.current_segments AS
SELECT s.customer_id,
       s.segment,
       s.p_a, s.p_b, s.p_c, s.p_d,
       greatest(s.p_a, s.p_b, s.p_c, s.p_d) AS confidence,
       s.model_version,
       s.scored_at,
       s.run_id,
       f.gender, f.ever_married, f.age, f.graduated, f.profession,
       f.work_experience, f.spending_score, f.family_size, f.var_1
FROM segmentation.customer_segments AS s
LEFT JOIN segmentation.customer_features AS f USING (customer_id);

CREATE OR REPLACE VIEW segmentation.segment_summary AS
SELECT s.segment,
       count(*) AS customers,
       round(count(*)::numeric / nullif(sum(count(*)) OVER (), 0), 4) AS share,
       round(avg(greatest(s.p_a, s.p_b, s.p_c, s.p_d))::numeric, 4) AS mean_confidence,
       round(avg(f.age)::numeric, 1) AS mean_age,
       max(s.scored_at) AS last_scored_at,
       max(s.model_version) AS model_version
FROM segmentation.customer_segments AS s
LEFT JOIN segmentation.customer_features AS f USING (customer_id)
GROUP BY s.segment
ORDER BY s.segment;

-- Customers per segment, kept exact by every write of customer_segments (swap and upserts).
CREATE TABLE IF NOT EXISTS segmentation.segment_counts (
    segment    char(1) PRIMARY KEY,
    customers  bigint NOT NULL
);
INSERT INTO segmentation.segment_counts (segment, customers)
SELECT segment, count(*) FROM segmentation.customer_segments GROUP BY segment;

-- Scoring state: the model version of the live table, and the full rescore under way (if any).
CREATE TABLE IF NOT EXISTS segmentation.scoring_state (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    live_model_version  integer,
    rebuild_run         text,
    rebuild_table       text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO segmentation.scoring_state (live_model_version)
SELECT CASE WHEN count(DISTINCT model_version) = 1 THEN min(model_version) END
FROM segmentation.customer_segments;

-- Each run's plan: incremental (ids in score_queue) or a rebuild (id ranges into a fresh table).
CREATE TABLE IF NOT EXISTS segmentation.scoring_plans (
    run_id         text PRIMARY KEY,
    mode           text NOT NULL CHECK (mode IN ('increment', 'rebuild')),
    model_version  integer NOT NULL,
    shards         integer NOT NULL,
    bounds         bigint[] NOT NULL DEFAULT '{}',
    rebuild_table  text,
    planned_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);
-- Shards of a rebuild that committed their rows, so a retried shard never writes them twice.
CREATE TABLE IF NOT EXISTS segmentation.rebuild_shards (
    rebuild_table  text NOT NULL,
    shard          integer NOT NULL,
    rows           bigint NOT NULL,
    PRIMARY KEY (rebuild_table, shard)
);

-- Fresh tables of full rescores live here until they are swapped in.
CREATE SCHEMA IF NOT EXISTS segmentation_rebuild;

-- DDL on rebuild tables runs as the owner of customer_segments, so the pipeline role needs no schema
-- rights. Every function accepts only names of the form segments_<hex> in segmentation_rebuild.
CREATE OR REPLACE FUNCTION segmentation.rebuild_check_name(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF name IS NULL OR name !~ '^segments_[0-9a-f]{8,32}$' THEN
        RAISE EXCEPTION 'rebuild table name % is not of the form segments_<hex>', name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION segmentation.rebuild_create(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM segmentation.rebuild_check_name(name);
    EXECUTE format('DROP TABLE IF EXISTS segmentation_rebuild.%I', name);
    EXECUTE format(
        'CREATE TABLE segmentation_rebuild.%I (LIKE segmentation.customer_segments INCLUDING DEFAULTS '
        'INCLUDING CONSTRAINTS) WITH (fillfactor = 90, autovacuum_enabled = false)', name);
    IF session_user::text <> current_user::text THEN
        EXECUTE format('GRANT SELECT, INSERT ON segmentation_rebuild.%I TO %I', name, session_user);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION segmentation.rebuild_drop(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM segmentation.rebuild_check_name(name);
    EXECUTE format('DROP TABLE IF EXISTS segmentation_rebuild.%I', name);
END
$$;

-- Other rebuild tables than ``keep`` (left by killed or superseded runs); returns how many were dropped.
CREATE OR REPLACE FUNCTION segmentation.rebuild_drop_others(keep text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t text;
    n integer := 0;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS s ON s.oid = c.relnamespace
             WHERE s.nspname = 'segmentation_rebuild' AND c.relkind = 'r'
               AND c.relname ~ '^segments_[0-9a-f]{8,32}$' AND c.relname IS DISTINCT FROM keep
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS segmentation_rebuild.%I', t);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- The primary key, built once after every shard has written (sorting once beats maintaining it per row).
CREATE OR REPLACE FUNCTION segmentation.rebuild_index(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET maintenance_work_mem = '256MB' AS $$
BEGIN
    PERFORM segmentation.rebuild_check_name(name);
    EXECUTE format('ALTER TABLE segmentation_rebuild.%I ADD PRIMARY KEY (customer_id)', name);
END
$$;

-- ANALYZE, then swap: the fresh table becomes the one partition, the old one is dropped. One transaction
-- (the caller's); a kill before its commit leaves the old partition in place.
CREATE OR REPLACE FUNCTION segmentation.rebuild_swap(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old text;
BEGIN
    PERFORM segmentation.rebuild_check_name(name);
    EXECUTE format('ANALYZE segmentation_rebuild.%I', name);
    SELECT format('%I.%I', n.nspname, c.relname) INTO old
    FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE i.inhparent = 'segmentation.customer_segments'::regclass;
    IF old IS NOT NULL THEN
        EXECUTE format('ALTER TABLE segmentation.customer_segments DETACH PARTITION %s', old);
    END IF;
    EXECUTE format('ALTER TABLE segmentation_rebuild.%I RESET (autovacuum_enabled)', name);
    EXECUTE format('ALTER TABLE segmentation_rebuild.%I SET SCHEMA segmentation', name);
    EXECUTE format('ALTER TABLE segmentation.customer_segments ATTACH PARTITION segmentation.%I '
                   'FOR VALUES FROM (MINVALUE) TO (MAXVALUE)', name);
    IF session_user::text <> current_user::text THEN
        EXECUTE format('REVOKE ALL ON segmentation.%I FROM %I', name, session_user);
    END IF;
    IF old IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', old);
    END IF;
END
$$;

-- Take every queued score (a full rescore scores everyone). TRUNCATE waits for writers that are queueing and
-- empties only what they committed; rows queued after it stay queued.
CREATE OR REPLACE FUNCTION segmentation.take_all_score_pending() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    TRUNCATE segmentation.score_pending;
END
$$;

REVOKE ALL ON FUNCTION segmentation.rebuild_create(text), segmentation.rebuild_drop(text),
    segmentation.rebuild_drop_others(text), segmentation.rebuild_index(text), segmentation.rebuild_swap(text),
    segmentation.take_all_score_pending() FROM PUBLIC;

-- finalise reads the missing-value rates of the run's clean rows; without an index that is a scan of the table.
CREATE INDEX IF NOT EXISTS clean_customers_run_idx ON segmentation.clean_customers (run_id);
