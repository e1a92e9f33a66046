-- One load of a source at a time (files, watermark and schema changes are per source).
SELECT pg_advisory_xact_lock(hashtextextended('campaign-orchestrator ingest ' || %(source_id)s, 0))
