-- Delivery feedback, one statement per batch: the events (bound as parallel arrays) are
-- linked to their ledger row by provider_message_id, inserted unless already there
-- (provider_event_id: SQS and SNS deliver at least once), and the newly inserted permanent
-- bounces and complaints put their address on crm.suppression in the same statement, so a
-- hard-bounced address is never mailed again once the batch commits. An event already
-- ingested suppresses nothing again: a suppression lifted by hand stays lifted.
-- Returns one row per newly inserted event (with its recipient, for the soft-bounce count of
-- feedback/suppress_soft_bounces.sql) and one per newly suppressed address. %(source)s names
-- the feedback source on the suppression (ses_feedback, smtp_bounce, sendgrid_webhook…).
WITH incoming AS (
    SELECT *
    FROM unnest(
        %(provider_message_id)s::text[], %(channel)s::text[], %(event_type)s::text[],
        %(bounce_type)s::text[], %(detail)s::jsonb[], %(occurred_at)s::timestamptz[],
        %(provider_event_id)s::text[], %(recipient)s::text[]
    ) AS e(provider_message_id, channel, event_type, bounce_type, detail, occurred_at,
           provider_event_id, recipient)
),
inserted AS (
    INSERT INTO campaign.delivery_event AS d
        (provider_message_id, run_key, step_id, profile_id, entity_key, channel, event_type,
         bounce_type, detail, occurred_at, provider_event_id)
    SELECT e.provider_message_id, m.run_key, m.step_id, m.profile_id, m.entity_key,
           coalesce(m.channel, e.channel), e.event_type, e.bounce_type, e.detail, e.occurred_at,
           e.provider_event_id
    FROM incoming e
    -- An id names one send; LIMIT 1 only guards against ids shared by several rows
    -- (a direct-mail manifest), which no provider reports on.
    LEFT JOIN LATERAL (
        SELECT m.run_key, m.step_id, m.profile_id, m.entity_key, m.channel
        FROM campaign.message m
        WHERE m.provider_message_id = e.provider_message_id
        ORDER BY m.sent_at DESC NULLS LAST
        LIMIT 1
    ) m ON true
    ON CONFLICT (provider_event_id) DO NOTHING
    RETURNING d.event_type, d.bounce_type, d.channel, d.run_key, d.detail ->> 'recipient' AS recipient
),
suppressed AS (
    INSERT INTO crm.suppression (channel, address, reason, source)
    -- A complaint outranks a hard bounce of the same address in the same batch.
    SELECT DISTINCT ON (address) 'email', address, reason, %(source)s
    FROM (
        SELECT lower(btrim(i.recipient)) AS address,
               CASE i.event_type WHEN 'complained' THEN 'complaint' ELSE 'hard_bounce' END AS reason
        FROM inserted i
        WHERE i.channel = 'email' AND nullif(btrim(i.recipient), '') IS NOT NULL
          AND (i.event_type = 'complained' OR (i.event_type = 'bounced' AND i.bounce_type = 'Permanent'))
    ) s
    ORDER BY address, reason = 'complaint' DESC
    ON CONFLICT (channel, address) DO NOTHING
    RETURNING reason
)
SELECT 'event' AS kind, event_type, bounce_type, run_key IS NOT NULL AS matched, channel, recipient FROM inserted
UNION ALL
SELECT 'suppressed', reason, NULL, NULL, NULL, NULL FROM suppressed
