-- The load's one set-based merge: insert new keys, update existing ones where the record is
-- newer (its version is higher, or without a version its values differ). ON CONFLICT on the
-- business key's unique index; counts of inserted and updated rows from RETURNING.
WITH merged AS (
    INSERT INTO {target} AS t ({columns})
    SELECT {values} FROM {source} {where}
    ON CONFLICT ({key}) {action}
    RETURNING (t.xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged
