-- The transition and realised-quality relations that the Segmentation pages read, by the columns the pages
-- rely on, as plain tables that the UI tests fill with known numbers (created only where they are missing).
CREATE TABLE IF NOT EXISTS segmentation.segment_transitions (
    run_id        text NOT NULL,
    from_segment  char(1),
    to_segment    char(1) NOT NULL,
    cause         text NOT NULL CHECK (cause IN ('new', 'model', 'attributes', 'both')),
    customers     bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS segmentation.realised_quality (
    model_version  integer NOT NULL,
    labelled       bigint NOT NULL,
    accuracy       double precision NOT NULL,
    macro_f1       double precision NOT NULL,
    log_loss       double precision,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS segmentation.realised_quality_daily (
    day            date NOT NULL,
    model_version  integer NOT NULL,
    labelled       bigint NOT NULL,
    accuracy       double precision NOT NULL,
    macro_f1       double precision NOT NULL,
    log_loss       double precision
);
