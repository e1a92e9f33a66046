-- Records split by the reader itself (JSON lines, query rows, a CSV file COPY could not
-- split): line, error and raw text for a record that is no row, then the columns.
COPY ingest_stage (_line, _error, _raw, {columns}) FROM STDIN
