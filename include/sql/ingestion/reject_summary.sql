-- What a load would reject, by kind and reason, with the first lines of each.
SELECT kind, reason, count(*), (array_agg(line ORDER BY line))[1:5]
FROM ingest_reject GROUP BY kind, reason ORDER BY count(*) DESC, kind, reason LIMIT %(limit)s
