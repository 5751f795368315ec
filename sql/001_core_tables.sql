-- Core tables of the segmentation pipeline. Idempotent: safe to apply again.
CREATE SCHEMA IF NOT EXISTS segmentation;

-- Source rows as written upstream (or by `segmentation load-csv`). Attributes are kept as text so that
-- malformed values survive until validation can quarantine them with a reason.
CREATE TABLE IF NOT EXISTS segmentation.customers (
    customer_id      bigint PRIMARY KEY,
    gender           text,
    ever_married     text,
    age              text,
    graduated        text,
    profession       text,
    work_experience  text,
    spending_score   text,
    family_size      text,
    var_1            text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS customers_updated_at_idx ON segmentation.customers (updated_at);

CREATE TABLE IF NOT EXISTS segmentation.customer_labels (
    customer_id  bigint PRIMARY KEY,
    segment      char(1) NOT NULL CHECK (segment IN ('A', 'B', 'C', 'D')),
    labeled_at   timestamptz NOT NULL DEFAULT now()
);

-- Validated, normalised and typed customers. Missing values stay NULL: the model imputes them.
CREATE TABLE IF NOT EXISTS segmentation.clean_customers (
    customer_id        bigint PRIMARY KEY,
    gender             text,
    ever_married       text,
    age                smallint,
    graduated          text,
    profession         text,
    work_experience    real,
    spending_score     text,
    family_size        real,
    var_1              text,
    source_updated_at  timestamptz NOT NULL,
    cleaned_at         timestamptz NOT NULL DEFAULT now(),
    run_id             text
);

CREATE TABLE IF NOT EXISTS segmentation.customer_features (
    customer_id          bigint PRIMARY KEY,
    gender               text,
    ever_married         text,
    age                  smallint,
    graduated            text,
    profession           text,
    work_experience      real,
    spending_score       text,
    family_size          real,
    var_1                text,
    spending_rank        smallint,
    working_years_share  real,
    source_updated_at    timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    run_id               text
);

-- Quarantine: the raw row, every reason it failed, and the run that saw it.
CREATE TABLE IF NOT EXISTS segmentation.customer_rejects (
    reject_id          bigserial PRIMARY KEY,
    customer_id        bigint,
    raw                jsonb NOT NULL,
    reasons            text[] NOT NULL,
    run_id             text,
    source_updated_at  timestamptz,
    rejected_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS customer_rejects_version_uq
    ON segmentation.customer_rejects (customer_id, source_updated_at)
    WHERE customer_id IS NOT NULL AND source_updated_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS customer_rejects_run_idx ON segmentation.customer_rejects (run_id);

CREATE TABLE IF NOT EXISTS segmentation.model_versions (
    version           serial PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    status            text NOT NULL DEFAULT 'candidate'
                      CHECK (status IN ('candidate', 'champion', 'retired', 'rejected')),
    model_name        text NOT NULL,
    metrics           jsonb NOT NULL DEFAULT '{}',
    params            jsonb NOT NULL DEFAULT '{}',
    sha256            char(64) NOT NULL,
    artifact          bytea NOT NULL,
    data_fingerprint  jsonb NOT NULL DEFAULT '{}',
    profiles          jsonb NOT NULL DEFAULT '{}',
    trigger           text,
    code_version      text,
    run_id            text,
    promoted_at       timestamptz,
    notes             text
);
-- At most one champion, enforced by the database.
CREATE UNIQUE INDEX IF NOT EXISTS model_versions_one_champion
    ON segmentation.model_versions ((true)) WHERE status = 'champion';

CREATE TABLE IF NOT EXISTS segmentation.customer_segments (
    customer_id        bigint PRIMARY KEY,
    segment            char(1) NOT NULL CHECK (segment IN ('A', 'B', 'C', 'D')),
    p_a                double precision NOT NULL,
    p_b                double precision NOT NULL,
    p_c                double precision NOT NULL,
    p_d                double precision NOT NULL,
    model_version      integer NOT NULL REFERENCES segmentation.model_versions (version),
    source_updated_at  timestamptz NOT NULL,
    scored_at          timestamptz NOT NULL DEFAULT now(),
    run_id             text NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_segments_segment_idx ON segmentation.customer_segments (segment);
CREATE INDEX IF NOT EXISTS customer_segments_model_idx ON segmentation.customer_segments (model_version);

-- Append-only: one row per real change of a customer's segment (including the first one).
CREATE TABLE IF NOT EXISTS segmentation.segment_history (
    history_id        bigserial PRIMARY KEY,
    customer_id       bigint NOT NULL,
    previous_segment  char(1),
    segment           char(1) NOT NULL,
    model_version     integer NOT NULL,
    run_id            text NOT NULL,
    changed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS segment_history_customer_idx
    ON segmentation.segment_history (customer_id, changed_at);
CREATE INDEX IF NOT EXISTS segment_history_run_idx ON segmentation.segment_history (run_id);

-- Work items of one scoring run, split into shards by the planning task.
CREATE TABLE IF NOT EXISTS segmentation.score_queue (
    run_id       text NOT NULL,
    shard        integer NOT NULL,
    customer_id  bigint NOT NULL,
    PRIMARY KEY (run_id, shard, customer_id)
);

CREATE TABLE IF NOT EXISTS segmentation.pipeline_runs (
    run_id         text PRIMARY KEY,
    dag_id         text,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    status         text NOT NULL DEFAULT 'running',
    model_version  integer,
    steps          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS pipeline_runs_started_idx ON segmentation.pipeline_runs (started_at);

-- Data-quality and drift figures per run, one row per metric.
CREATE TABLE IF NOT EXISTS segmentation.drift_metrics (
    run_id       text NOT NULL,
    metric       text NOT NULL,
    subject      text NOT NULL DEFAULT '',
    value        double precision,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, metric, subject)
);
