-- Full snapshot: the target's keys the file does not have leave it.
WITH gone AS (
    DELETE FROM {target} t
    WHERE NOT EXISTS (SELECT 1 FROM {keys} WHERE {same_key})
    RETURNING 1
)
SELECT count(*) FROM gone
