-- Tombstoned keys leave the target, unless the target holds a newer version of them.
WITH gone AS (
    DELETE FROM {target} t USING {source}
    WHERE src._tombstone AND {same_key} AND {not_older}
    RETURNING 1
)
SELECT count(*) FROM gone
