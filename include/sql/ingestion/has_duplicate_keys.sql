-- Does some business key occur twice among the mergeable records?
SELECT EXISTS (SELECT 1 FROM ingest_stage s WHERE {filter} GROUP BY {key} HAVING count(*) > 1)
