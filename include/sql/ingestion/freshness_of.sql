-- The freshness of the given tables (a table never loaded has a row of nulls): as of when its
-- data is, when it was loaded, and how old the data is now.
SELECT t.table_name, f.data_as_of, f.loaded_at, f.source_id, extract(epoch FROM now() - f.data_as_of)
FROM unnest(%(tables)s::text[]) AS t(table_name)
LEFT JOIN ingest.freshness f USING (table_name)
ORDER BY t.table_name
