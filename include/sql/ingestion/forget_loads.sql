-- Demo only: forget what these sources loaded (the demo data generator has just replaced the
-- crm tables), so that their shipped files load again.
WITH forgotten AS (DELETE FROM ingest.load WHERE source_id = ANY(%(sources)s) RETURNING 1)
SELECT count(*) FROM forgotten
