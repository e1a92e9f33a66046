-- The careful path: the records that passed every check so far, in the target's types.
CREATE TEMP TABLE ingest_typed ON COMMIT DROP AS
SELECT {select_list}
FROM ingest_stage s
WHERE {filter} AND NOT EXISTS (SELECT 1 FROM ingest_reject r WHERE r.line = s._line)
