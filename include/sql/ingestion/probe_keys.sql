-- One pass over the staged records: how many cannot be merged (not split into columns, or
-- without a key or version), and whether a business key occurs twice among the others.
SELECT coalesce(sum(n) FILTER (WHERE NOT mergeable), 0),
       coalesce(bool_or(mergeable AND n > 1), false)
FROM (
    SELECT (s._error IS NULL AND {has_keys}) AS mergeable, {keys}, count(*) AS n
    FROM ingest_stage s
    GROUP BY {groups}
) AS per_key
