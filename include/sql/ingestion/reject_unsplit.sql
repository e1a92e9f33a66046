INSERT INTO ingest_reject (line, kind, reason)
SELECT _line, 'structure', _error FROM ingest_stage WHERE _error IS NOT NULL
