-- One-click unsubscribe: the profiles of the given (profile, channel) pairs become opted out
-- at once, with the caller's source and now(). One statement for any number of pairs, bound
-- as arrays. A pair already opted out is left as it is (whatever its source), so a second
-- click changes nothing and the consent history (written by the table's triggers) records
-- only real changes. A profile deleted since the message was sent is skipped.
WITH wanted AS (
    SELECT DISTINCT w.profile_id, w.channel
    FROM unnest(%(profile_ids)s::bigint[], %(channels)s::text[]) AS w(profile_id, channel)
    JOIN crm.profile p USING (profile_id)
),
changed AS (
    INSERT INTO crm.consent AS c (profile_id, channel, status, source, updated_at)
    SELECT profile_id, channel, 'opted_out', %(source)s, now() FROM wanted
    ON CONFLICT (profile_id, channel) DO UPDATE
        SET status = excluded.status, source = excluded.source, updated_at = excluded.updated_at
        WHERE c.status <> 'opted_out'
    RETURNING c.profile_id, c.channel
)
SELECT w.profile_id, w.channel, (c.profile_id IS NOT NULL) AS changed
FROM wanted w LEFT JOIN changed c USING (profile_id, channel)
