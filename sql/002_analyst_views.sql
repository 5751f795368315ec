-- Views for analysts: stable names over the pipeline tables.
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

CREATE OR REPLACE VIEW segmentation.segment_changes AS
SELECT h.customer_id,
       h.previous_segment,
       h.segment,
       h.model_version,
       h.run_id,
       h.changed_at
FROM segmentation.segment_history AS h
WHERE h.previous_segment IS NOT NULL;
