SELECT value FROM ingest.watermark WHERE source_id = %(source_id)s
