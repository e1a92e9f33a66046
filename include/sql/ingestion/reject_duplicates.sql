-- Records sharing a business key: the highest version (then the last line) is loaded, the
-- others are counted as duplicates and removed from the typed rows.
WITH ranked AS (
    SELECT _line, first_value(_line) OVER (PARTITION BY {key} ORDER BY {order}) AS kept
    FROM ingest_typed
),
dropped AS (
    INSERT INTO ingest_reject (line, kind, reason)
    SELECT _line, 'duplicate', format('duplicate key: line %%s has the same key and is loaded (%%s)', kept, %(why)s::text)
    FROM ranked WHERE _line <> kept
    RETURNING line
)
DELETE FROM ingest_typed t USING dropped d WHERE t._line = d.line
