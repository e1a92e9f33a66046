INSERT INTO ingest.watermark (source_id, column_name, value, load_id)
VALUES (%(source_id)s, %(column)s, %(value)s, %(load_id)s)
ON CONFLICT (source_id) DO UPDATE SET column_name = excluded.column_name, value = excluded.value,
    load_id = excluded.load_id, updated_at = now()
