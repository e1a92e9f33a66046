-- A load begins: its row is written on its own (autocommit), so a killed load leaves a trace.
INSERT INTO ingest.load (source_id, target_table, dag_run_id, url, identity, landed_at, backend_pid)
VALUES (%(source_id)s, %(table)s, %(dag_run_id)s, %(url)s, %(identity)s, %(landed_at)s, pg_backend_pid())
RETURNING load_id
