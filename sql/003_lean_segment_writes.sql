-- Every nightly rescore rewrites customer_segments, and each index costs on every written row. These two
-- low-cardinality indexes (four segments, a handful of model versions) never help a query: analysts'
-- segment filters match a quarter of the table and scan it anyway, and work selection compares
-- model_version with <>. Dropping them makes a full rescore's upsert cheaper.
DROP INDEX IF EXISTS segmentation.customer_segments_segment_idx;
DROP INDEX IF EXISTS segmentation.customer_segments_model_idx;
