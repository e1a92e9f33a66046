-- A proof has no audience: the chosen profile's own entities (through the entity's link
-- to the profile) stand in for its audience entities, in the step's order.
SELECT e0.{key}::text
FROM {entity_table} AS e0
WHERE e0.{profile_column} = %(profile_id)s
ORDER BY {order_by}
LIMIT %(limit)s
