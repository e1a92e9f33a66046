-- One schema change of a table at a time, whichever source declares it.
SELECT pg_advisory_xact_lock(hashtextextended('campaign-orchestrator ingest table ' || %(table)s, 0))
