-- Typed records the target would refuse (a NULL in a NOT NULL column, a failed CHECK, a
-- foreign key with no row), found before the merge so that they are rejected one by one
-- instead of failing the load; then removed from the typed rows.
WITH refused AS (
    INSERT INTO ingest_reject (line, kind, reason)
    SELECT t._line, 'constraint', {reason} FROM ingest_typed t WHERE {violated}
    RETURNING line
)
DELETE FROM ingest_typed t USING refused r WHERE t._line = r.line
