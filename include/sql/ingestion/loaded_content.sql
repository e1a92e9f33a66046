-- A successful load of the same content (another name, or the file touched since).
SELECT load_id, url FROM ingest.load
WHERE source_id = %(source_id)s AND sha256 = %(sha256)s AND status = 'succeeded'
ORDER BY load_id LIMIT 1
