-- A table's CHECK constraints and foreign keys: name, kind, the CHECK expression, the local
-- columns, and the referenced table and columns.
SELECT c.conname,
       c.contype,
       CASE WHEN c.contype = 'c' THEN pg_get_expr(c.conbin, c.conrelid) END,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
       CASE WHEN c.contype = 'f' THEN c.confrelid::regclass::text END,
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_constraint c
WHERE c.conrelid = to_regclass(%(table)s) AND c.contype IN ('c', 'f')
ORDER BY c.conname
