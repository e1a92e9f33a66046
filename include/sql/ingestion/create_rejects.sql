-- The rows of one load that are not loaded, by line, with the kind and reason.
CREATE TEMP TABLE ingest_reject (line bigint NOT NULL, kind text NOT NULL, reason text NOT NULL) ON COMMIT DROP
