-- The successful load of this file with this identity, if any: loading it again is a no-op.
SELECT load_id, finished_at FROM ingest.load
WHERE source_id = %(source_id)s AND url = %(url)s AND identity = %(identity)s AND status = 'succeeded'
