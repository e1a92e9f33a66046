SELECT count(DISTINCT line) FILTER (WHERE kind <> 'duplicate'), count(*) FILTER (WHERE kind = 'duplicate')
FROM ingest_reject
