-- A run's plan is one row per shard, the id range it owns, instead of one queue row per customer.
-- Writing and indexing a queue row per customer cost more than the ranking itself (planning took 4.7 s for
-- 1,000,000 and 39.6 s for 5,000,000 customers), and finalise deleted them again. A shard now scores the customers of its range that
-- still need work when it runs, so a retried shard after a committed attempt finds nothing left to do.
CREATE TABLE IF NOT EXISTS segmentation.score_shards (
    run_id        text NOT NULL,
    shard         integer NOT NULL,
    first_id      bigint NOT NULL,
    last_id       bigint NOT NULL,
    planned_rows  bigint NOT NULL,
    PRIMARY KEY (run_id, shard),
    CHECK (first_id <= last_id)
);
DROP TABLE IF EXISTS segmentation.score_queue;
