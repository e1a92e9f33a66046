-- What one-message-per-profile templates read, for one claimed chunk: each profile's
-- entities in the run's frozen audience, in the step's order (entities_order_by, then the
-- key), at most %(max_entities)s per profile, with the linked entities the templates follow
-- and only the columns they name. One statement per chunk, never one per message.
-- Fragments are composed by run/enrichment.py from the entity catalog; values are bound.
SELECT listed.*
FROM (
    SELECT m.profile_id,
           row_number() OVER (PARTITION BY m.profile_id ORDER BY {order_by}) AS position{columns}
    FROM campaign.audience_member AS m
    JOIN {entity_table} AS e0 ON e0.{key} = nullif(m.entity_key, '')::{key_type}
    {joins}
    -- entity_key <> '': only rows with an entity are indexed by profile (migration 0012).
    WHERE m.run_key = %(run_key)s AND m.profile_id = ANY(%(profile_ids)s::bigint[]) AND m.entity_key <> ''
) AS listed
WHERE %(max_entities)s::integer IS NULL OR listed.position <= %(max_entities)s::integer
ORDER BY listed.profile_id, listed.position
