-- The load's rejects, kept: each with the record as read (its raw text when it could not be
-- split, else its columns by source name).
INSERT INTO ingest.reject (load_id, source_id, url, line, kind, reason, raw)
SELECT %(load_id)s, %(source_id)s, %(url)s, r.line, r.kind, r.reason,
       CASE WHEN s._raw IS NOT NULL THEN to_jsonb(s._raw)
            ELSE jsonb_object(%(names)s::text[], ARRAY[{columns}]::text[]) END
FROM ingest_reject r
LEFT JOIN ingest_stage s ON s._line = r.line
