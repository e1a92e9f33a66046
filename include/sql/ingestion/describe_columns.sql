-- The columns of a table: name, type as PostgreSQL writes it (format_type), NOT NULL, whether
-- an insert without it gets a value (a default, an identity or a generated column), whether it
-- is generated (never written), and whether it is a string type (kept as text when staged).
SELECT a.attname,
       format_type(a.atttypid, a.atttypmod),
       a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '',
       a.attgenerated <> '',
       t.typcategory = 'S'
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
