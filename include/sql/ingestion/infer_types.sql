-- For each candidate type, whether every non-empty value of a staged column (in the first
-- rows) is valid input for it: the narrowest that holds is the column's inferred type (a date
-- has no time: PostgreSQL would read '2026-12-01 10:00' as a date too).
SELECT t.type_name, bool_and({is_valid}(v, t.type_name) AND (t.type_name <> 'date' OR v !~ ':'))
FROM (SELECT nullif(btrim({column}), '') AS v FROM ingest_stage WHERE _error IS NULL ORDER BY _line LIMIT %(rows)s) s
CROSS JOIN unnest(%(types)s::text[]) WITH ORDINALITY AS t(type_name, rank)
WHERE v IS NOT NULL
GROUP BY t.type_name, t.rank
ORDER BY t.rank
