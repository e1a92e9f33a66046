-- Loads of this source still 'running' whose session is gone were killed: their transaction
-- was rolled back, the target is as before. Called holding the source's lock.
UPDATE ingest.load SET status = 'failed', finished_at = now(),
       error = 'interrupted: the loading process ended before the load committed; nothing was loaded'
WHERE source_id = %(source_id)s AND status = 'running' AND load_id <> %(load_id)s
  AND backend_pid NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
RETURNING load_id
