SELECT columns FROM ingest.source_schema WHERE source_id = %(source_id)s
