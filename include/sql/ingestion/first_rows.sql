SELECT _line, _error, _raw, {columns} FROM ingest_stage ORDER BY _line LIMIT %(rows)s
