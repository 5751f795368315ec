-- Per-shard attribute distributions of a full rescore. Each rebuild shard counts its customers per segment and
-- attribute bucket while it has their features in memory, in its own transaction; the publish sums the
-- shards' counts into segment_distributions. Before, finalise scanned and joined every customer again for
-- them (3.1 s at 1,000,000 customers, 19.4 s at 5,000,000).
CREATE TABLE IF NOT EXISTS segmentation.rebuild_distributions (
    rebuild_table  text NOT NULL,
    shard          integer NOT NULL,
    segment        char(1) NOT NULL,
    attribute      text NOT NULL,
    bucket         text NOT NULL,
    customers      bigint NOT NULL,
    PRIMARY KEY (rebuild_table, shard, segment, attribute, bucket)
);
