-- Records without a business key (or version): nothing to merge them by.
INSERT INTO ingest_reject (line, kind, reason)
SELECT s._line, 'missing_key', {reason} FROM ingest_stage s WHERE s._error IS NULL AND NOT ({has_keys})
