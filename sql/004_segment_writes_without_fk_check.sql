-- A foreign key from customer_segments.model_version runs one referential check per written row, and a full
-- rescore writes every row: on a 2-core machine the check doubled the upsert's time (200,000 rows: 3.0 s with
-- it, 1.4 s without). Every row of a shard carries the one version that the shard loaded from
-- model_versions in the same transaction, and versions are never deleted (they are retired), so the check
-- adds no protection the write path does not already give.
ALTER TABLE segmentation.customer_segments DROP CONSTRAINT IF EXISTS customer_segments_model_version_fkey;
