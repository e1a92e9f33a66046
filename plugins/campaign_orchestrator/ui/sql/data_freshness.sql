-- Each table sources load: its freshness (as of when its data is, when it was loaded, when
-- the file landed) and the last load into it, whatever its outcome, with its counts.
SELECT t.table_name, f.source_id, f.data_as_of, f.loaded_at, f.landed_at, f.rows_loaded,
       l.load_id, l.source_id, l.status, l.url, l.started_at, l.finished_at, l.rows_read, l.inserted, l.updated,
       l.unchanged, l.deleted, l.rejected, l.duplicates, l.error, l.warnings
FROM (SELECT DISTINCT target_table AS table_name FROM ingest.load) t
LEFT JOIN ingest.freshness f USING (table_name)
CROSS JOIN LATERAL (
    SELECT * FROM ingest.load WHERE target_table = t.table_name ORDER BY load_id DESC LIMIT 1
) l
ORDER BY t.table_name
