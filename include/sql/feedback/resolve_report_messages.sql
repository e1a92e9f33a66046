-- Which sent email each bounce or complaint report is about, for a batch of reports.
-- By VERP token first: the profile's history (message_history_idx: a profile has a few
-- hundred sent messages at most) filtered by the Message-ID uuid the token names. Else by a
-- Message-ID quoted in the returned headers (message_provider_id_idx). One row per report
-- matched; reports absent from the result matched nothing.
WITH by_token AS (
    SELECT DISTINCT ON (t.ref) t.ref, m.provider_message_id, m.address, 'verp' AS matched_by
    FROM unnest(%(token_ref)s::int[], %(token_uuid)s::text[], %(token_profile)s::bigint[])
         AS t(ref, message_uuid, profile_id)
    JOIN campaign.message m
      ON m.profile_id = t.profile_id AND m.channel = 'email' AND m.status = 'sent'
     AND starts_with(m.provider_message_id, '<' || t.message_uuid || '@')
    ORDER BY t.ref, m.sent_at DESC
),
by_message_id AS (
    SELECT DISTINCT ON (i.ref) i.ref, m.provider_message_id, m.address, 'message_id' AS matched_by
    FROM unnest(%(id_ref)s::int[], %(message_id)s::text[]) AS i(ref, message_id)
    JOIN campaign.message m ON m.provider_message_id = i.message_id AND m.channel = 'email'
    WHERE i.ref NOT IN (SELECT ref FROM by_token)
    ORDER BY i.ref, m.sent_at DESC NULLS LAST
)
SELECT ref, provider_message_id, address, matched_by FROM by_token
UNION ALL
SELECT ref, provider_message_id, address, matched_by FROM by_message_id
