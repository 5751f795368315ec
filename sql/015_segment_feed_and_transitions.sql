-- Segment transitions per run, and a change feed with consumer watermarks (README: "Segment change feed").
--
-- segment_transitions: per run, how many customers went from one segment to another and why. Written by the
--   same statements that write segment_history (scoring's increment shards and the publish of a full rescore),
--   so a run's counts always sum to its history rows.
-- segment_feed: one row per segment_history row (event 'entered' or 'moved', written by a trigger on
--   segment_history, in the inserting statement) plus one 'exited' row per scored customer deleted from
--   segmentation.customers. change_id order is commit order: every writer of the feed holds the advisory lock
--   SEGMENT_WRITE (segmentation.locks, 7210003) from before its first feed row until its commit, so a row
--   committed later never gets a smaller change_id, and a consumer that remembers the last change_id it took
--   never misses one.
-- feed_consumers: the last change_id each consumer took (its watermark).

CREATE TABLE IF NOT EXISTS segmentation.segment_transitions (
    run_id        text NOT NULL,
    from_segment  char(1),
    to_segment    char(1) NOT NULL,
    cause         text NOT NULL CHECK (cause IN ('new', 'model', 'attributes', 'both')),
    customers     bigint NOT NULL,
    CONSTRAINT segment_transitions_key UNIQUE NULLS NOT DISTINCT (run_id, from_segment, to_segment, cause)
);

CREATE TABLE IF NOT EXISTS segmentation.segment_feed (
    change_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id       bigint NOT NULL,
    segment           char(1),
    previous_segment  char(1),
    event             text NOT NULL CHECK (event IN ('entered', 'moved', 'exited')),
    model_version     integer,
    run_id            text,
    changed_at        timestamptz NOT NULL DEFAULT now(),
    history_id        bigint UNIQUE,
    CHECK ((event = 'exited') = (segment IS NULL)),
    CHECK ((event = 'entered') = (previous_segment IS NULL))
);
-- The publish of a full rescore looks up customers that exited (few) to keep them out of its fresh table.
CREATE INDEX IF NOT EXISTS segment_feed_exited_idx ON segmentation.segment_feed (customer_id) WHERE event = 'exited';

CREATE TABLE IF NOT EXISTS segmentation.feed_consumers (
    consumer        text PRIMARY KEY,
    last_change_id  bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz
);

-- Feed rows of new history rows, in history_id order, in the statement that inserted them.
CREATE OR REPLACE FUNCTION segmentation.feed_from_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Held already by scoring's writers (it is re-entrant); taken here for any other writer of history.
    PERFORM pg_advisory_xact_lock(7210003);
    INSERT INTO segmentation.segment_feed
        (customer_id, segment, previous_segment, event, model_version, run_id, changed_at, history_id)
    SELECT customer_id, segment, previous_segment,
           CASE WHEN previous_segment IS NULL THEN 'entered' ELSE 'moved' END,
           model_version, run_id, changed_at, history_id
    FROM new_history ORDER BY history_id;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS segment_history_feed ON segmentation.segment_history;
CREATE TRIGGER segment_history_feed AFTER INSERT ON segmentation.segment_history
    REFERENCING NEW TABLE AS new_history FOR EACH STATEMENT EXECUTE FUNCTION segmentation.feed_from_history();

-- A customer deleted from segmentation.customers leaves the pipeline: its clean and feature rows and queue
-- entries go, and a scored customer's customer_segments row goes too (segment_counts follows), with an
-- 'exited' feed row carrying its last segment. Its segment_history, quarantined rows and labels stay.
-- Without this, a deleted customer kept its features and segment and was rescored by every full rescore.
-- A quarantined customer (customer_rejects) keeps its last segment and is not an exit.
CREATE OR REPLACE FUNCTION segmentation.customers_exit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM gone_rows) THEN
        RETURN NULL;
    END IF;
    -- The clean step's lock (segmentation.locks.CLEAN): a clean step in flight finishes first, and the next one
    -- sees the deletion, so no clean row of a deleted customer is written after this.
    PERFORM pg_advisory_xact_lock(7210004);
    DELETE FROM segmentation.clean_pending AS q USING gone_rows AS g WHERE q.customer_id = g.customer_id;
    DELETE FROM segmentation.features_pending AS q USING gone_rows AS g WHERE q.customer_id = g.customer_id;
    DELETE FROM segmentation.score_pending AS q USING gone_rows AS g WHERE q.customer_id = g.customer_id;
    DELETE FROM segmentation.clean_customers AS k USING gone_rows AS g WHERE k.customer_id = g.customer_id;
    DELETE FROM segmentation.customer_features AS f USING gone_rows AS g WHERE f.customer_id = g.customer_id;
    -- Every writer of customer_segments and of the feed takes turns here (SEGMENT_WRITE).
    PERFORM pg_advisory_xact_lock(7210003);
    WITH removed AS (
        DELETE FROM segmentation.customer_segments AS s USING gone_rows AS g WHERE s.customer_id = g.customer_id
        RETURNING s.customer_id, s.segment, s.model_version
    ), fed AS (
        INSERT INTO segmentation.segment_feed (customer_id, segment, previous_segment, event, model_version)
        SELECT customer_id, NULL, segment, 'exited', model_version FROM removed ORDER BY customer_id
    )
    UPDATE segmentation.segment_counts AS c SET customers = c.customers - m.n
    FROM (SELECT segment, count(*) AS n FROM removed GROUP BY segment) AS m
    WHERE c.segment = m.segment;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS customers_exit ON segmentation.customers;
CREATE TRIGGER customers_exit AFTER DELETE ON segmentation.customers
    REFERENCING OLD TABLE AS gone_rows FOR EACH STATEMENT EXECUTE FUNCTION segmentation.customers_exit();

-- The publish of a full rescore drops, from its fresh table, customers that exited (deleted after a shard read
-- their features), so that it does not bring them back. Returns how many it dropped.
CREATE OR REPLACE FUNCTION segmentation.rebuild_forget_exited(name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM segmentation.rebuild_check_name(name);
    IF NOT EXISTS (SELECT 1 FROM segmentation.segment_feed WHERE event = 'exited') THEN
        RETURN 0;
    END IF;
    EXECUTE format(
        'DELETE FROM segmentation_rebuild.%I AS t WHERE t.customer_id IN ('
        'SELECT f.customer_id FROM segmentation.segment_feed AS f WHERE f.event = ''exited'' '
        'AND NOT EXISTS (SELECT 1 FROM segmentation.customers AS c WHERE c.customer_id = f.customer_id))', name);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION segmentation.rebuild_forget_exited(text) FROM PUBLIC;

-- Existing databases: one feed row per history row, in history order. Causes of old changes are unknown
-- (whether the model or the attributes moved a customer was not recorded), so transitions are backfilled only
-- for runs whose every history row is a first scoring (cause 'new'); other old runs have no transitions.
SELECT pg_advisory_xact_lock(7210003);
INSERT INTO segmentation.segment_feed
    (customer_id, segment, previous_segment, event, model_version, run_id, changed_at, history_id)
SELECT customer_id, segment, previous_segment,
       CASE WHEN previous_segment IS NULL THEN 'entered' ELSE 'moved' END,
       model_version, run_id, changed_at, history_id
FROM segmentation.segment_history AS h
WHERE NOT EXISTS (SELECT 1 FROM segmentation.segment_feed AS f WHERE f.history_id = h.history_id)
ORDER BY history_id;
INSERT INTO segmentation.segment_transitions (run_id, from_segment, to_segment, cause, customers)
SELECT run_id, NULL, segment, 'new', count(*)
FROM segmentation.segment_history
WHERE run_id IN (SELECT run_id FROM segmentation.segment_history GROUP BY run_id
                 HAVING bool_and(previous_segment IS NULL))
GROUP BY run_id, segment
ON CONFLICT ON CONSTRAINT segment_transitions_key DO NOTHING;
