-- This file with this identity was loaded already (or skipped as the same content as a
-- loaded one): loading it again is a no-op.
SELECT load_id, finished_at FROM ingest.load
WHERE source_id = %(source_id)s AND url = %(url)s AND identity = %(identity)s AND status IN ('succeeded', 'skipped')
ORDER BY load_id LIMIT 1
