-- The table's freshness after a successful load; data_as_of never goes back (an older file
-- loaded late does not make the table look older).
INSERT INTO ingest.freshness AS f (table_name, source_id, load_id, data_as_of, loaded_at, landed_at, rows_loaded)
VALUES (%(table)s, %(source_id)s, %(load_id)s, %(data_as_of)s, now(), %(landed_at)s, %(rows)s)
ON CONFLICT (table_name) DO UPDATE SET
    source_id = excluded.source_id, load_id = excluded.load_id,
    data_as_of = greatest(f.data_as_of, excluded.data_as_of), loaded_at = excluded.loaded_at,
    landed_at = excluded.landed_at, rows_loaded = excluded.rows_loaded
