INSERT INTO ingest.table_change (table_name, source_id, statement) VALUES (%(table)s, %(source_id)s, %(statement)s)
