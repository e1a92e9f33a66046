INSERT INTO ingest.source_schema (source_id, columns, load_id)
VALUES (%(source_id)s, %(columns)s, %(load_id)s)
ON CONFLICT (source_id) DO UPDATE SET columns = excluded.columns, load_id = excluded.load_id, updated_at = now()
