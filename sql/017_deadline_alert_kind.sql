-- A new alert kind: 'deadline_missed', raised when a nightly run has not published its segments within
-- SEGMENTATION_FRESHNESS_DEADLINE_HOURS of being queued (the DAG's Deadline Alert).
--
-- Written to compose with other migrations that add kinds: it adds this one kind to whatever list the CHECK
-- constraint allows now, instead of restating the whole list.
DO $$
DECLARE
    definition text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO definition
      FROM pg_constraint
     WHERE conrelid = 'segmentation.alerts'::regclass AND conname = 'alerts_kind_check';
    IF definition IS NOT NULL AND position('''deadline_missed''' IN definition) = 0 THEN
        ALTER TABLE segmentation.alerts DROP CONSTRAINT alerts_kind_check;
        EXECUTE 'ALTER TABLE segmentation.alerts ADD CONSTRAINT alerts_kind_check '
                || regexp_replace(definition, '\]', ', ''deadline_missed''::text]');
    END IF;
END
$$;
