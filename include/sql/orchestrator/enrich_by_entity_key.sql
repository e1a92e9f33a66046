-- What one-message-per-entity templates read, for one claimed chunk: the audience's entities
-- by key, with the linked entities the templates follow (LEFT JOINs along the catalog's
-- links), and only the columns they name. One statement per chunk, never one per message.
-- Identifiers and the key's type are composed in by run/enrichment.py from the entity
-- catalog and the store's own type names; values are bound.
SELECT e0.{key}::text{columns}
FROM {entity_table} AS e0
{joins}
WHERE e0.{key} = ANY(%(keys)s::text[]::{key_type}[])
