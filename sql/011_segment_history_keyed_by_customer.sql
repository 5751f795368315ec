-- A full rescore writes up to one history row per customer in one statement, so every index of
-- segment_history costs it a million insertions. Keyed by (customer_id, history_id), the table needs one
-- index fewer: the key serves a customer's history (the UI's customer page), and the rows a rescore inserts
-- in customer order fill it page after page. history_id stays unique (its sequence) and keeps the order.
ALTER TABLE segmentation.segment_history DROP CONSTRAINT IF EXISTS segment_history_pkey;
ALTER TABLE segmentation.segment_history ADD CONSTRAINT segment_history_pkey PRIMARY KEY (customer_id, history_id);
DROP INDEX IF EXISTS segmentation.segment_history_customer_idx;
