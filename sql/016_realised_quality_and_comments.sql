-- Realised quality from late labels, and the analyst views documented in the database. Idempotent.
--
-- 1. label_outcomes: when a label arrives for a customer whose scored row was written before the label, the
--    label is kept next to what the model had assigned (segment, probabilities, model version, scoring run).
--    A label that arrives before the customer's first scoring is not a late label and is not kept. A corrected
--    label (an UPDATE of customer_labels) replaces the label of an existing outcome; the assigned segment stays
--    the one scored before the first label.
-- 2. realised_quality (per model version) and realised_quality_daily (per label day, UTC): accuracy, macro-F1
--    over the segments present in labels or assignments (as scikit-learn's f1_score(average='macro')) and log
--    loss (probabilities clipped to [eps, 1 - eps] as scikit-learn's log_loss does). Built on two internal
--    views, label_outcome_scores (per outcome) and label_outcome_classes (per version, day and segment), which
--    analysts are not granted.
-- 3. The alert kind realised_quality_drop, added to the alerts' kind check whatever else that check allows.
-- 4. COMMENT ON every analyst view and each of its columns; `segmentation data-dictionary` prints them.

CREATE TABLE IF NOT EXISTS segmentation.label_outcomes (
    customer_id    bigint PRIMARY KEY,
    label          char(1) NOT NULL CHECK (label IN ('A', 'B', 'C', 'D')),
    labeled_at     timestamptz NOT NULL,
    segment        char(1) NOT NULL CHECK (segment IN ('A', 'B', 'C', 'D')),
    model_version  integer NOT NULL,
    p_a            double precision,
    p_b            double precision,
    p_c            double precision,
    p_d            double precision,
    scored_at      timestamptz NOT NULL,
    run_id         text NOT NULL
);
CREATE INDEX IF NOT EXISTS label_outcomes_version_idx ON segmentation.label_outcomes (model_version, labeled_at);

-- One trigger per event (a trigger with a transition table handles one): new labels are matched with the scored
-- row they found; updated labels only correct the label of an outcome kept before.
CREATE OR REPLACE FUNCTION segmentation.record_label_outcomes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO segmentation.label_outcomes
            (customer_id, label, labeled_at, segment, model_version, p_a, p_b, p_c, p_d, scored_at, run_id)
        SELECT n.customer_id, n.segment, n.labeled_at, s.segment, s.model_version, s.p_a, s.p_b, s.p_c, s.p_d,
               s.scored_at, s.run_id
        FROM new_labels AS n
        JOIN segmentation.customer_segments AS s ON s.customer_id = n.customer_id AND s.scored_at < n.labeled_at
        ON CONFLICT (customer_id) DO UPDATE SET label = EXCLUDED.label, labeled_at = EXCLUDED.labeled_at;
    ELSE
        UPDATE segmentation.label_outcomes AS o SET label = n.segment, labeled_at = n.labeled_at
        FROM new_labels AS n
        WHERE o.customer_id = n.customer_id AND (o.label, o.labeled_at) IS DISTINCT FROM (n.segment, n.labeled_at);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER customer_labels_outcomes_insert AFTER INSERT ON segmentation.customer_labels
    REFERENCING NEW TABLE AS new_labels FOR EACH STATEMENT EXECUTE FUNCTION segmentation.record_label_outcomes();
CREATE OR REPLACE TRIGGER customer_labels_outcomes_update AFTER UPDATE ON segmentation.customer_labels
    REFERENCING NEW TABLE AS new_labels FOR EACH STATEMENT EXECUTE FUNCTION segmentation.record_label_outcomes();

-- Labels that arrived before this migration: where the scored row still predates the label, it is the row the
-- label found.
INSERT INTO segmentation.label_outcomes
    (customer_id, label, labeled_at, segment, model_version, p_a, p_b, p_c, p_d, scored_at, run_id)
SELECT l.customer_id, l.segment, l.labeled_at, s.segment, s.model_version, s.p_a, s.p_b, s.p_c, s.p_d,
       s.scored_at, s.run_id
FROM segmentation.customer_labels AS l
JOIN segmentation.customer_segments AS s ON s.customer_id = l.customer_id AND s.scored_at < l.labeled_at
ON CONFLICT (customer_id) DO NOTHING;

-- The log loss of one outcome from the probability it gave the label: -ln(p), p clipped to [eps, 1 - eps] with eps
-- the float64 machine epsilon (as scikit-learn's log_loss); NULL stays NULL. One expression, so it is inlined.
CREATE OR REPLACE FUNCTION segmentation.clipped_log_loss(p double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT -ln(CASE WHEN p < 2.220446049250313e-16::double precision THEN 2.220446049250313e-16::double precision
                    WHEN p > 1.0::double precision - 2.220446049250313e-16::double precision
                        THEN 1.0::double precision - 2.220446049250313e-16::double precision
                    ELSE p END)
$$;

-- Each outcome with its day (UTC), whether the assignment was right, and its log loss.
CREATE OR REPLACE VIEW segmentation.label_outcome_scores AS
SELECT o.model_version,
       (o.labeled_at AT TIME ZONE 'UTC')::date AS day,
       o.labeled_at,
       o.label = o.segment AS correct,
       segmentation.clipped_log_loss(
           CASE o.label WHEN 'A' THEN o.p_a WHEN 'B' THEN o.p_b WHEN 'C' THEN o.p_c ELSE o.p_d END) AS loss
FROM segmentation.label_outcomes AS o;

-- Per model version, label day (UTC) and segment: true positives, false positives, false negatives, from the
-- confusion counts (one pass over the outcomes, then at most 16 cells per version and day).
CREATE OR REPLACE VIEW segmentation.label_outcome_classes AS
WITH confusion AS (
    SELECT model_version, (labeled_at AT TIME ZONE 'UTC')::date AS day, label, segment, count(*) AS n
    FROM segmentation.label_outcomes
    GROUP BY 1, 2, 3, 4
)
SELECT m.model_version,
       m.day,
       c.segment,
       coalesce(sum(m.n) FILTER (WHERE m.label = c.segment AND m.segment = c.segment), 0) AS true_positives,
       coalesce(sum(m.n) FILTER (WHERE m.label <> c.segment AND m.segment = c.segment), 0) AS false_positives,
       coalesce(sum(m.n) FILTER (WHERE m.label = c.segment AND m.segment <> c.segment), 0) AS false_negatives
FROM confusion AS m
CROSS JOIN (VALUES ('A'::char(1)), ('B'), ('C'), ('D')) AS c (segment)
GROUP BY 1, 2, 3;

-- Figures are aggregated per version (or version and day) before the macro-F1 is joined, so a query for one
-- version reads only that version's outcomes.
CREATE OR REPLACE VIEW segmentation.realised_quality AS
WITH totals AS (
    SELECT model_version,
           count(*) AS labelled,
           (count(*) FILTER (WHERE correct))::double precision / count(*) AS accuracy,
           CASE WHEN count(loss) = count(*) THEN avg(loss) END AS log_loss,
           min(labeled_at) AS window_start,
           max(labeled_at) AS window_end
    FROM segmentation.label_outcome_scores
    GROUP BY model_version
), per_class AS (
    SELECT model_version, segment,
           sum(true_positives) AS tp, sum(false_positives) AS fp, sum(false_negatives) AS fn
    FROM segmentation.label_outcome_classes
    GROUP BY model_version, segment
), f1 AS (
    SELECT model_version, avg(2.0 * tp / (2 * tp + fp + fn)) FILTER (WHERE tp + fp + fn > 0) AS macro_f1
    FROM per_class
    GROUP BY model_version
)
SELECT t.model_version, t.labelled, t.accuracy, f1.macro_f1::double precision AS macro_f1, t.log_loss,
       t.window_start, t.window_end
FROM totals AS t
JOIN f1 USING (model_version);

CREATE OR REPLACE VIEW segmentation.realised_quality_daily AS
WITH totals AS (
    SELECT day, model_version,
           count(*) AS labelled,
           (count(*) FILTER (WHERE correct))::double precision / count(*) AS accuracy,
           CASE WHEN count(loss) = count(*) THEN avg(loss) END AS log_loss
    FROM segmentation.label_outcome_scores
    GROUP BY day, model_version
), f1 AS (
    SELECT model_version, day,
           avg(2.0 * true_positives / (2 * true_positives + false_positives + false_negatives))
               FILTER (WHERE true_positives + false_positives + false_negatives > 0) AS macro_f1
    FROM segmentation.label_outcome_classes
    GROUP BY model_version, day
)
SELECT t.day, t.model_version, t.labelled, t.accuracy, f1.macro_f1::double precision AS macro_f1, t.log_loss
FROM totals AS t
JOIN f1 USING (model_version, day);

-- The alert kind of segmentation.realised: kept alongside whatever kinds the check allows already.
DO $$
DECLARE
    def text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO def FROM pg_constraint
    WHERE conrelid = 'segmentation.alerts'::regclass AND conname = 'alerts_kind_check';
    IF def IS NULL THEN
        ALTER TABLE segmentation.alerts ADD CONSTRAINT alerts_kind_check CHECK (kind = 'realised_quality_drop');
    ELSIF position('realised_quality_drop' IN def) = 0 THEN
        ALTER TABLE segmentation.alerts DROP CONSTRAINT alerts_kind_check;
        EXECUTE format('ALTER TABLE segmentation.alerts ADD CONSTRAINT alerts_kind_check CHECK (%s OR kind = %L)',
                       substring(def FROM '^CHECK \((.*)\)$'), 'realised_quality_drop');
    END IF;
END
$$;

-- The analyst views, documented where analysts look (\d+ in psql, any SQL client); README's data dictionary is
-- generated from these comments (`segmentation data-dictionary`).
COMMENT ON VIEW segmentation.current_segments IS
    'Each scored customer''s current segment, its probabilities and the attributes it was scored on.';
COMMENT ON COLUMN segmentation.current_segments.customer_id IS 'Customer id (the source system''s ID).';
COMMENT ON COLUMN segmentation.current_segments.segment IS 'Assigned segment, A to D: the most probable one.';
COMMENT ON COLUMN segmentation.current_segments.p_a IS 'Probability of segment A (0..1).';
COMMENT ON COLUMN segmentation.current_segments.p_b IS 'Probability of segment B (0..1).';
COMMENT ON COLUMN segmentation.current_segments.p_c IS 'Probability of segment C (0..1).';
COMMENT ON COLUMN segmentation.current_segments.p_d IS 'Probability of segment D (0..1).';
COMMENT ON COLUMN segmentation.current_segments.confidence IS 'Probability of the assigned segment (the largest of p_a..p_d).';
COMMENT ON COLUMN segmentation.current_segments.model_version IS 'Model version that scored the customer (model_versions.version).';
COMMENT ON COLUMN segmentation.current_segments.scored_at IS 'When the customer was last scored.';
COMMENT ON COLUMN segmentation.current_segments.run_id IS 'Pipeline run that scored the customer (pipeline_runs.run_id).';
COMMENT ON COLUMN segmentation.current_segments.gender IS 'Gender: Female or Male.';
COMMENT ON COLUMN segmentation.current_segments.ever_married IS 'Ever married: Yes or No; NULL when unknown.';
COMMENT ON COLUMN segmentation.current_segments.age IS 'Age in years.';
COMMENT ON COLUMN segmentation.current_segments.graduated IS 'Graduated: Yes or No; NULL when unknown.';
COMMENT ON COLUMN segmentation.current_segments.profession IS 'Profession; NULL when unknown.';
COMMENT ON COLUMN segmentation.current_segments.work_experience IS 'Work experience in years; NULL when unknown.';
COMMENT ON COLUMN segmentation.current_segments.spending_score IS 'Spending score: Low, Average or High.';
COMMENT ON COLUMN segmentation.current_segments.family_size IS 'Family size (persons); NULL when unknown.';
COMMENT ON COLUMN segmentation.current_segments.var_1 IS 'Anonymised category Cat_1..Cat_7 of the source; NULL when unknown.';

COMMENT ON VIEW segmentation.segment_summary IS 'One row per segment: its size, share, mean confidence and mean age now.';
COMMENT ON COLUMN segmentation.segment_summary.segment IS 'Segment, A to D.';
COMMENT ON COLUMN segmentation.segment_summary.customers IS 'Customers currently in the segment.';
COMMENT ON COLUMN segmentation.segment_summary.share IS 'Share of all scored customers (0..1, 4 decimals).';
COMMENT ON COLUMN segmentation.segment_summary.mean_confidence IS 'Mean probability of the assigned segment (4 decimals).';
COMMENT ON COLUMN segmentation.segment_summary.mean_age IS 'Mean age in years (1 decimal).';
COMMENT ON COLUMN segmentation.segment_summary.last_scored_at IS 'Latest scoring time among the segment''s customers.';
COMMENT ON COLUMN segmentation.segment_summary.model_version IS 'Highest model version among the segment''s customers.';

COMMENT ON VIEW segmentation.segment_changes IS
    'Every change of a scored customer''s segment after its first scoring, with the segment before it.';
COMMENT ON COLUMN segmentation.segment_changes.customer_id IS 'Customer id.';
COMMENT ON COLUMN segmentation.segment_changes.previous_segment IS 'Segment before the change.';
COMMENT ON COLUMN segmentation.segment_changes.segment IS 'Segment after the change.';
COMMENT ON COLUMN segmentation.segment_changes.model_version IS 'Model version that assigned the new segment.';
COMMENT ON COLUMN segmentation.segment_changes.run_id IS 'Pipeline run that made the change.';
COMMENT ON COLUMN segmentation.segment_changes.changed_at IS 'When the change was written.';

COMMENT ON VIEW segmentation.realised_quality IS
    'Per model version, how its assignments fared against labels that arrived after scoring (late labels).';
COMMENT ON COLUMN segmentation.realised_quality.model_version IS 'Model version that assigned the segments.';
COMMENT ON COLUMN segmentation.realised_quality.labelled IS 'Customers labelled after this version had scored them.';
COMMENT ON COLUMN segmentation.realised_quality.accuracy IS 'Share of those customers whose assigned segment equals the label (0..1).';
COMMENT ON COLUMN segmentation.realised_quality.macro_f1 IS
    'Mean F1 over the segments present in labels or assignments (0..1), as scikit-learn''s f1_score(average=''macro'').';
COMMENT ON COLUMN segmentation.realised_quality.log_loss IS
    'Mean -ln(probability given to the label), probabilities clipped to [eps, 1-eps]; NULL when some outcome has no probabilities.';
COMMENT ON COLUMN segmentation.realised_quality.window_start IS 'First label time counted.';
COMMENT ON COLUMN segmentation.realised_quality.window_end IS 'Last label time counted.';

COMMENT ON VIEW segmentation.realised_quality_daily IS 'realised_quality per label day (UTC) and model version.';
COMMENT ON COLUMN segmentation.realised_quality_daily.day IS 'Day the labels arrived (UTC).';
COMMENT ON COLUMN segmentation.realised_quality_daily.model_version IS 'Model version that assigned the segments.';
COMMENT ON COLUMN segmentation.realised_quality_daily.labelled IS 'Customers labelled that day after this version had scored them.';
COMMENT ON COLUMN segmentation.realised_quality_daily.accuracy IS 'Share whose assigned segment equals the label (0..1).';
COMMENT ON COLUMN segmentation.realised_quality_daily.macro_f1 IS 'Macro-F1 of that day''s outcomes (0..1).';
COMMENT ON COLUMN segmentation.realised_quality_daily.log_loss IS 'Mean log loss of that day''s outcomes; NULL when some outcome has no probabilities.';

-- The two tables of sql/015 that analysts read.
COMMENT ON TABLE segmentation.segment_transitions IS
    'Per scoring run, how many customers moved from one segment to another, and why.';
COMMENT ON COLUMN segmentation.segment_transitions.run_id IS 'Pipeline run that wrote the changes.';
COMMENT ON COLUMN segmentation.segment_transitions.from_segment IS 'Segment before the run; NULL for a first scoring.';
COMMENT ON COLUMN segmentation.segment_transitions.to_segment IS 'Segment after the run.';
COMMENT ON COLUMN segmentation.segment_transitions.cause IS
    'Why: new (first scoring), model (a new model version), attributes (changed attributes) or both (the two together).';
COMMENT ON COLUMN segmentation.segment_transitions.customers IS 'Customers that made this transition in the run.';
COMMENT ON TABLE segmentation.segment_feed IS
    'Every segment event in order, for consumers that read incrementally: WHERE change_id > last one read.';
COMMENT ON COLUMN segmentation.segment_feed.change_id IS 'Unique, increasing position of the event in the feed.';
COMMENT ON COLUMN segmentation.segment_feed.customer_id IS 'Customer id.';
COMMENT ON COLUMN segmentation.segment_feed.segment IS 'Segment after the event; NULL when the customer exited.';
COMMENT ON COLUMN segmentation.segment_feed.previous_segment IS 'Segment before the event; NULL when the customer entered.';
COMMENT ON COLUMN segmentation.segment_feed.event IS 'entered, moved or exited.';
COMMENT ON COLUMN segmentation.segment_feed.model_version IS 'Model version that assigned the segment.';
COMMENT ON COLUMN segmentation.segment_feed.run_id IS 'Pipeline run that wrote the event.';
COMMENT ON COLUMN segmentation.segment_feed.changed_at IS 'When the event was written.';
COMMENT ON COLUMN segmentation.segment_feed.history_id IS 'The segment_history row of the event.';
