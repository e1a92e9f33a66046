-- Ingestion into the store (dags/ingestion/*.yaml): what each load did, its rejected rows,
-- each table's freshness, the watermarks of incremental queries, the columns each source
-- last delivered (to tell a column removed upstream), and the tables sources created.

CREATE SCHEMA IF NOT EXISTS ingest;

-- One row per load of one file (or one query run) by a source. A load writes its row as
-- 'running' on its own, then sets the outcome in the transaction that changes the target:
-- a killed load leaves 'running' behind (the next load of the source marks it 'failed') and
-- the target untouched. A file is loaded once per identity (its S3 ETag, or size and mtime).
CREATE TABLE ingest.load (
    load_id       bigserial PRIMARY KEY,
    source_id     text NOT NULL,
    target_table  text NOT NULL,
    dag_run_id    text,                     -- null when run from the CLI
    url           text,                     -- the file; null for a query
    identity      text,                     -- ETag, or size+mtime of a local file
    sha256        text,                     -- of the content as read (text formats)
    landed_at     timestamptz,              -- when the file was written to storage
    status        text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    backend_pid   integer,                  -- the loading session, to tell a killed load
    rows_read     bigint NOT NULL DEFAULT 0,
    inserted      bigint NOT NULL DEFAULT 0,
    updated       bigint NOT NULL DEFAULT 0,
    unchanged     bigint NOT NULL DEFAULT 0,
    deleted       bigint NOT NULL DEFAULT 0,
    rejected      bigint NOT NULL DEFAULT 0,
    duplicates    bigint NOT NULL DEFAULT 0,
    data_as_of    timestamptz,
    watermark     text,
    warnings      jsonb NOT NULL DEFAULT '[]',
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX load_source_idx ON ingest.load (source_id, started_at DESC);
CREATE INDEX load_table_idx ON ingest.load (target_table, finished_at DESC) WHERE status = 'succeeded';
CREATE UNIQUE INDEX load_file_once_idx ON ingest.load (source_id, url, identity) WHERE status = 'succeeded';
CREATE INDEX load_content_idx ON ingest.load (source_id, sha256) WHERE status = 'succeeded';

-- Rows a load did not take, with where they were and why; raw holds the row as read.
CREATE TABLE ingest.reject (
    load_id    bigint NOT NULL REFERENCES ingest.load ON DELETE CASCADE,
    source_id  text NOT NULL,
    url        text,
    line       bigint,           -- the record's line in the file (row number of a query)
    kind       text NOT NULL CHECK (kind IN ('structure', 'missing_key', 'invalid_value', 'duplicate', 'constraint')),
    reason     text NOT NULL,
    raw        jsonb
);
CREATE INDEX reject_load_idx ON ingest.reject (load_id, line);

-- Each loaded table's freshness: as of when its data is, and when it was last loaded.
CREATE TABLE ingest.freshness (
    table_name  text PRIMARY KEY,            -- schema.table
    source_id   text NOT NULL,
    load_id     bigint NOT NULL,
    data_as_of  timestamptz NOT NULL,
    loaded_at   timestamptz NOT NULL,
    landed_at   timestamptz,                 -- when the last loaded file landed
    rows_loaded bigint NOT NULL              -- rows read by the last load
);

-- Incremental queries: the largest watermark value loaded so far, per source.
CREATE TABLE ingest.watermark (
    source_id    text PRIMARY KEY,
    column_name  text NOT NULL,
    value        text NOT NULL,
    load_id      bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The columns (and, for Parquet, types) a source delivered at its last successful load: a
-- column missing from the next file was removed upstream.
CREATE TABLE ingest.source_schema (
    source_id   text PRIMARY KEY,
    columns     jsonb NOT NULL,              -- {"column": "type or null", ...} in file order
    load_id     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Tables (and columns) created by sources that declare them: the DDL each applied, like a
-- migration, in order.
CREATE TABLE ingest.table_change (
    change_id   bigserial PRIMARY KEY,
    table_name  text NOT NULL,
    source_id   text NOT NULL,
    statement   text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- crm.booking had no time of its last change (its version column counts updates, bumped by a
-- trigger): a booking source's version. Existing rows have none, so any loaded record is newer.
ALTER TABLE crm.booking ADD COLUMN updated_at timestamptz;

-- Whether a text is valid input for a type: PostgreSQL 16's pg_input_is_valid(), for the 15
-- this store also runs on. Loads call it only on files that failed the all-at-once cast, to
-- find the bad values set-based; each call is a subtransaction, so it is never the fast path.
CREATE FUNCTION ingest.input_is_valid(value text, type_name text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    max_length integer;
BEGIN
    IF value IS NULL THEN
        RETURN true;
    END IF;
    max_length := substring(type_name FROM '^(?:character varying|character|varchar|char|bpchar)\((\d+)\)$')::integer;
    IF max_length IS NOT NULL THEN
        -- An over-long value is an error on assignment, unless what is over is spaces.
        RETURN char_length(rtrim(value)) <= max_length;
    END IF;
    CASE type_name
        WHEN 'text', 'character varying', 'character' THEN NULL;
        WHEN 'bigint' THEN PERFORM value::bigint;
        WHEN 'integer' THEN PERFORM value::integer;
        WHEN 'smallint' THEN PERFORM value::smallint;
        WHEN 'boolean' THEN PERFORM value::boolean;
        WHEN 'date' THEN PERFORM value::date;
        WHEN 'timestamp with time zone' THEN PERFORM value::timestamptz;
        WHEN 'timestamp without time zone' THEN PERFORM value::timestamp;
        WHEN 'numeric' THEN PERFORM value::numeric;
        WHEN 'double precision' THEN PERFORM value::double precision;
        WHEN 'real' THEN PERFORM value::real;
        WHEN 'uuid' THEN PERFORM value::uuid;
        WHEN 'jsonb' THEN PERFORM value::jsonb;
        WHEN 'json' THEN PERFORM value::json;
        ELSE
            IF to_regtype(type_name) IS NULL THEN
                RAISE EXCEPTION 'ingest.input_is_valid: % is not a type', type_name USING ERRCODE = 'undefined_object';
            END IF;
            EXECUTE format('SELECT %L::%s', value, type_name);   -- e.g. numeric(10,2), an enum, a domain
    END CASE;
    RETURN true;
EXCEPTION
    WHEN data_exception OR check_violation OR not_null_violation THEN  -- 22xxx; a domain's CHECK
        RETURN false;
END $$;
