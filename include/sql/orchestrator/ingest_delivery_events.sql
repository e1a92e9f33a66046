-- Delivery feedback, one statement per batch: the events (bound as parallel arrays) are
-- linked to their ledger row, inserted unless already there (provider_event_id: SQS and SNS
-- deliver at least once, a pixel loads many times), and the newly inserted permanent
-- bounces and complaints put their address on crm.suppression in the same statement, so a
-- hard-bounced address is never mailed again once the batch commits. An event already
-- ingested suppresses nothing again: a suppression lifted by hand stays lifted.
--
-- The ledger row is found by its key when the event carries one (the tracking endpoint's
-- opens and clicks: the signed link names the message) and otherwise by provider_message_id
-- (SES and SNS report their own ids). An event naming a ledger row that is no longer there
-- (its run was deleted, or the link came from a proof) is not kept: it has no address and
-- no step to count in. Provider events for unknown ids are kept with run_key NULL.
--
-- Opens and clicks get machine, the reason no person made them: the one the endpoint (or a
-- provider) saw, detail.machine; else, for the endpoint's hits (timed by this side's clocks,
-- where a provider's timestamps may be skewed), too_fast when the hit came while the message
-- was still being sent, within a second of its sent_at, or of its delivery event. A repeated hit
-- adds nothing, except that a person's hit turns a machine's row into a person's (the
-- machine's reason and time are kept in detail), so a prefetching proxy that came first
-- does not hide the recipient's own open.
-- Returns one row per newly inserted (or so turned) event (with its recipient, for the
-- soft-bounce count of feedback/suppress_soft_bounces.sql) and one per newly suppressed
-- address. %(source)s names the feedback source on the suppression (ses_feedback,
-- smtp_bounce, sendgrid_webhook…).
WITH incoming AS (
    SELECT *
    FROM unnest(
        %(provider_message_id)s::text[], %(channel)s::text[], %(event_type)s::text[],
        %(bounce_type)s::text[], %(detail)s::jsonb[], %(occurred_at)s::timestamptz[],
        %(provider_event_id)s::text[], %(recipient)s::text[],
        %(run_key)s::bigint[], %(step_id)s::text[], %(profile_id)s::bigint[], %(entity_key)s::text[]
    ) AS e(provider_message_id, channel, event_type, bounce_type, detail, occurred_at,
           provider_event_id, recipient, run_key, step_id, profile_id, entity_key)
),
inserted AS (
    INSERT INTO campaign.delivery_event AS d
        (provider_message_id, run_key, step_id, profile_id, entity_key, channel, event_type,
         bounce_type, detail, occurred_at, provider_event_id, machine)
    SELECT coalesce(m.provider_message_id, e.provider_message_id), m.run_key, m.step_id, m.profile_id,
           m.entity_key, coalesce(m.channel, e.channel), e.event_type, e.bounce_type, e.detail, e.occurred_at,
           e.provider_event_id,
           CASE WHEN e.event_type IN ('opened', 'clicked') THEN coalesce(
               e.detail ->> 'machine',
               CASE WHEN e.run_key IS NULL THEN NULL
                    WHEN m.status = 'sending'
                      OR e.occurred_at < m.sent_at + interval '1 second'
                      OR EXISTS (
                          SELECT 1 FROM campaign.delivery_event AS delivered
                          WHERE delivered.run_key = m.run_key AND delivered.step_id = m.step_id
                            AND delivered.profile_id = m.profile_id AND delivered.event_type = 'delivered'
                            AND delivered.entity_key = m.entity_key
                            AND e.occurred_at < delivered.occurred_at + interval '1 second'
                      )
                    THEN 'too_fast' END
           ) END
    FROM incoming e
    -- Each branch runs only for its kind of event (the other's condition on e is false).
    LEFT JOIN LATERAL (
        (SELECT m.run_key, m.step_id, m.profile_id, m.entity_key, m.channel, m.provider_message_id,
                m.status, m.sent_at
         FROM campaign.message m
         WHERE e.run_key IS NOT NULL
           AND m.run_key = e.run_key AND m.step_id = e.step_id AND m.profile_id = e.profile_id
           AND m.entity_key = e.entity_key)
        UNION ALL
        -- An id names one send; LIMIT 1 only guards against ids shared by several rows
        -- (a direct-mail manifest), which no provider reports on.
        (SELECT m.run_key, m.step_id, m.profile_id, m.entity_key, m.channel, m.provider_message_id,
                m.status, m.sent_at
         FROM campaign.message m
         WHERE e.run_key IS NULL AND m.provider_message_id = e.provider_message_id
         ORDER BY m.sent_at DESC NULLS LAST
         LIMIT 1)
    ) m ON true
    WHERE e.run_key IS NULL OR m.run_key IS NOT NULL
    ON CONFLICT (provider_event_id) DO UPDATE
        SET machine = NULL, occurred_at = EXCLUDED.occurred_at,
            detail = EXCLUDED.detail || jsonb_build_object('machine_first', d.machine, 'machine_first_at', d.occurred_at)
        WHERE d.machine IS NOT NULL AND EXCLUDED.machine IS NULL
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
